"""The Your images page's actions, as widget callbacks (they run before the page is drawn again, so that the
grid shows the image gone at once): each calls core.datasets and leaves its outcome for the page to show."""

from __future__ import annotations

from pathlib import PurePosixPath

import streamlit as st

from core.access import PermissionDenied
from core.data.splits import DataError
from core.datasets.upload import read_files, read_zip
from ui.common import plain
from ui.datasets import library, use
from ui.identity import me

OUTCOME = "images_outcome"  # (kind, text): what the last action did, shown once
TARGET = 10  # labeled images per class the progress bars count towards: enough for 5-fold cross-validation


def say(kind: str, text: str) -> None:
    st.session_state[OUTCOME] = (kind, text)


def show_outcome() -> None:
    if outcome := st.session_state.pop(OUTCOME, None):
        getattr(st, outcome[0])(outcome[1])


def make_dataset(files: list, name: str, resolution: int) -> None:
    """From the uploader's files: one zip, or image files (all unlabeled, to label here)."""
    zips = [f for f in files if PurePosixPath(f.name).suffix.lower() == ".zip"]
    try:
        if zips and len(files) > 1:
            raise DataError("upload one zip, or image files, not both at once")
        if zips:
            incoming = read_zip(zips[0].getvalue(), resolution, name=zips[0].name)
        else:
            incoming = read_files([(f.name, f.getvalue()) for f in files], resolution)
        info = library().create(incoming, name, me())
    except (DataError, PermissionDenied) as err:
        say("error", f"Nothing was imported: {plain(err)}")
        return
    use(info.slug)
    skipped = f" {len(incoming.skipped)} file(s) skipped (listed under Your datasets)." if incoming.skipped else ""
    classes = f"{len(info.classes)} classes, " if info.classes else ""
    counts = f"{classes}{info.n_labeled} labeled, {info.unlabeled} unlabeled, {info.n_test} test images"
    say("success", f"**{info.name}** is ready: {counts} at {info.resolution} px.{skipped} It is now the dataset in "
        "use (sidebar).")  # fmt: skip


def _guarded(action, *args) -> None:
    try:
        action(*args)
    except (DataError, PermissionDenied) as err:
        say("error", plain(err))


def add_class(slug: str) -> None:
    name = st.session_state.get("new_class", "")
    _guarded(lambda: library().add_class(slug, name, me()))
    st.session_state["new_class"] = ""


def label(slug: str, where: str, name: str, split: str) -> None:
    _guarded(lambda: library().label(slug, where, name, me(), split=split))


def undo(slug: str) -> None:
    def take_back() -> None:
        _, back = library().undo(slug, me())
        say("info", "Took the last label back." if back else "Nothing to undo.")

    _guarded(take_back)


def delete(slug: str) -> None:
    def remove() -> None:
        name = library().get(slug, me()).name
        library().delete(slug, me())
        use("")
        say("success", f"Deleted the dataset {name!r}; the runs made on it stay on Compare.")

    _guarded(remove)


def share(slug: str) -> None:
    _guarded(lambda: library().share(slug, st.session_state.get(f"share_{slug}", False), me()))
