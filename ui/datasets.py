"""The dataset this browser tab works on: the server's own (CIFAR-10 or its folder) or one brought from the
browser (core.datasets.library), chosen in the sidebar. Every page loads and queues runs on it; core checks
that the person may use it."""

from __future__ import annotations

import streamlit as st

from core.access import PermissionDenied
from core.data.splits import DataError
from core.datasets.library import DatasetInfo, DatasetLibrary
from ui.common import settings
from ui.identity import me

CHOICE = "dataset_choice"  # session key: "" for the server's dataset, else an uploaded dataset's slug


def library() -> DatasetLibrary:
    return DatasetLibrary(settings().datasets_dir)


def usable() -> list[DatasetInfo]:
    """Uploaded datasets this person may use (their own, the shared ones; all of them for a teacher)."""
    return library().list(me())


def chosen() -> DatasetInfo | None:
    """The uploaded dataset chosen in this tab, None for the server's (also once it is deleted or unshared)."""
    slug = st.session_state.get(CHOICE, "")
    if not slug:
        return None
    try:
        return library().get(slug, me())
    except (DataError, PermissionDenied):
        st.session_state[CHOICE] = ""
        return None


def active() -> tuple[str, str]:
    """(source, stamp): what load_splits and the queue take (the server's dataset, or the chosen upload's folder:
    server side only), and what changes when the upload's labels change, so that cached splits load again."""
    info = chosen()  # one manifest read for both
    return (str(info.folder), info.fingerprint) if info is not None else (settings().dataset, "")


def active_source() -> str:
    return active()[0]


def server_label() -> str:
    dataset = settings().dataset
    return (
        "CIFAR-10 (the server's)"
        if dataset == "cifar10"
        else f"{dataset.rstrip('/').rsplit('/', 1)[-1]} (the server's)"
    )


def use(slug: str) -> None:
    st.session_state[CHOICE] = slug


def show_picker() -> None:
    """The sidebar's dataset selector (uploaded datasets by name: never a folder)."""
    # Labels that do not change as images are labelled: a selectbox keeps its choice by its label.
    mine = usable()
    names = [d.name for d in mine]
    options = {"": server_label()} | {
        d.slug: d.name if names.count(d.name) == 1 and d.name != server_label() else f"{d.name} ({d.slug})"
        for d in mine
    }
    current = st.session_state.get(CHOICE, "")
    if current not in options:
        st.session_state[CHOICE] = current = ""
    # The choice lives in a key of its own, not the widget's: it outlives pages that do not draw the sidebar, and
    # `use` (a button elsewhere) changes it. The widget's key follows it, so that it shows the choice made there.
    picker = f"dataset_picker_{current}"
    keys = list(options)
    st.selectbox("Dataset", keys, index=keys.index(current), format_func=options.get, key=picker, on_change=_picked,
                 args=(picker,), help="Bring your own on the *Your images* page.")  # fmt: skip


def _picked(picker: str) -> None:
    st.session_state[CHOICE] = st.session_state[picker]
