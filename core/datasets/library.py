"""The datasets users bring: one folder each under SMALLDATA_DATASETS_DIR, laid out as any folder dataset
(`labeled/<class>/`, `unlabeled/`, `test/<class>/` when there is one, read by core.data.folder) plus
`manifest.json`: name, owner, whether the class may use it, classes, resolution, counts, a content
fingerprint, and the labelling history (for undo).

A dataset is written in a hidden folder and renamed into place when complete: a failed import leaves
nothing behind. Every change asks core.access first: in class mode a dataset is its uploader's, the
teacher's to share with the class, and nobody else's to label or delete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from core.access import Actor, PermissionDenied, check
from core.data.folder import MANIFEST, read_manifest
from core.data.splits import DataError
from core.datasets.images import RESOLUTIONS, png_bytes
from core.datasets.upload import Incoming, UploadError, clean_class

SCHEMA = 1


class DatasetError(DataError):
    """A dataset operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset as the pages list it (no server path: `folder` is for core only)."""

    slug: str
    name: str
    owner: str
    shared: bool
    classes: tuple[str, ...]
    resolution: int
    labeled: dict[str, int]  # per class
    test: dict[str, int]
    unlabeled: int
    fingerprint: str
    skipped: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...]
    folder: Path

    @property
    def n_labeled(self) -> int:
        return sum(self.labeled.values())

    @property
    def n_test(self) -> int:
        return sum(self.test.values())


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
    return slug or "dataset"


def _fingerprint(files: dict[str, str]) -> str:
    """Of the content and its labels: each image's digest with the split and class it sits in."""
    digest = hashlib.sha256()
    for where, image in sorted(files.items()):
        digest.update(f"{where}|{image}\n".encode())
    return digest.hexdigest()[:16]


def leaks(files: dict[str, str]) -> list[str]:
    """Images that are both labeled and in the test set (by pixel digest): a test score on them is not one."""
    labeled = {d for w, d in files.items() if w.startswith("labeled/")}
    test = {d for w, d in files.items() if w.startswith("test/")}
    return sorted(labeled & test)


def _may_use(m: dict, by: Actor) -> bool:
    """Its owner, a teacher, and everyone once a teacher shared it."""
    return by.teacher or m["owner"] == by.name or bool(m.get("shared"))


class DatasetLibrary:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ---- reading
    def _manifest(self, slug: str) -> dict:
        manifest = read_manifest(self.root / slug)
        if manifest is None:
            raise DatasetError(f"dataset {slug!r} does not exist (or its manifest is damaged)")
        return manifest

    def _info(self, slug: str, m: dict) -> DatasetInfo:
        counts = self._counts(m)
        return DatasetInfo(
            slug=slug, name=m["name"], owner=m["owner"], shared=bool(m.get("shared")), classes=tuple(m["classes"]),
            resolution=int(m["resolution"]), labeled=counts["labeled"], test=counts["test"],
            unlabeled=counts["unlabeled"], fingerprint=_fingerprint(m["files"]),
            skipped=tuple(tuple(s) for s in m.get("skipped", [])), warnings=tuple(m.get("warnings", [])),
            folder=self.root / slug,
        )  # fmt: skip

    @staticmethod
    def _counts(m: dict) -> dict:
        out = {"labeled": dict.fromkeys(m["classes"], 0), "test": dict.fromkeys(m["classes"], 0), "unlabeled": 0}
        for where in m["files"]:
            split, *rest = where.split("/")
            if split == "unlabeled":
                out["unlabeled"] += 1
            else:
                out[split][rest[0]] = out[split].get(rest[0], 0) + 1
        return out

    def _readable(self, slug: str, by: Actor) -> dict:
        """The manifest, if `by` may use the dataset; PermissionDenied names whose it is."""
        m = self._manifest(slug)
        if not _may_use(m, by):
            raise PermissionDenied(f"dataset {m['name']!r} belongs to {m['owner']}: only they or a teacher can open it")
        return m

    def get(self, slug: str, by: Actor) -> DatasetInfo:
        return self._info(slug, self._readable(slug, by))

    def list(self, by: Actor) -> list[DatasetInfo]:
        """The datasets `by` may use: their own, the shared ones, every one for a teacher; newest first."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in self.root.iterdir():
            m = None if folder.name.startswith(".") else read_manifest(folder)  # hidden: being written or deleted
            try:
                if m is not None and _may_use(m, by):
                    found.append((m.get("created", 0), self._info(folder.name, m)))
            except (KeyError, TypeError, ValueError):
                continue  # a damaged manifest: not offered
        return [info for _, info in sorted(found, key=lambda f: -f[0])]

    def images(self, slug: str, by: Actor, split: str = "unlabeled") -> list[tuple[str, Path]]:
        """(`split/...`, its file) of each image of one split, in upload order: what a page labels and shows."""
        m = self._readable(slug, by)
        return [(w, self.root / slug / w) for w in sorted(m["files"]) if w.startswith(f"{split}/")]

    def files(self, slug: str, by: Actor, split: str = "unlabeled") -> list[str]:
        """Paths (`split/...`) of the images of one split, in upload order."""
        return [where for where, _ in self.images(slug, by, split)]

    # ---- writing
    def create(self, incoming: Incoming, name: str, by: Actor) -> DatasetInfo:
        """A new dataset of the decoded upload (at the resolution it was read at), written whole or not at all."""
        resolution = incoming.size
        if resolution not in RESOLUTIONS:
            raise DatasetError(f"resolution {resolution} is not offered; choose one of {RESOLUTIONS}")
        name = " ".join(name.split())[:60] or "My images"
        slug = self._free_slug(slugify(name))
        self.root.mkdir(parents=True, exist_ok=True)
        work = self.root / f".incoming-{secrets.token_hex(6)}"
        files: dict[str, str] = {}
        try:
            for i, image in enumerate(incoming.images):
                where = f"{image.split}/{image.label}" if image.label else image.split
                folder = work / where
                folder.mkdir(parents=True, exist_ok=True)
                filename = f"{i:05d}_{re.sub(r'[^A-Za-z0-9_-]+', '_', image.stem)[:40]}.png"
                (folder / filename).write_bytes(png_bytes(image.pixels))
                files[f"{where}/{filename}"] = image.digest
            leaked = leaks(files)
            warnings = [f"{len(leaked)} image(s) are both labeled and in the test set: a test score on them "
                        "would be a leak; remove them from one of the two"] if leaked else []  # fmt: skip
            manifest = {
                "schema": SCHEMA, "name": name, "owner": by.name, "shared": False, "created": time.time(),
                "resolution": resolution, "classes": incoming.classes(), "files": files, "history": [],
                "skipped": [list(s) for s in incoming.skipped[:200]], "warnings": warnings,
            }  # fmt: skip
            (work / MANIFEST).write_text(json.dumps(manifest, indent=1))
            os.rename(work, self.root / slug)  # whole, at once: a reader never sees half a dataset
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return self._info(slug, manifest)

    def _free_slug(self, slug: str) -> str:
        taken = {p.name for p in self.root.iterdir()} if self.root.is_dir() else set()
        candidate, n = slug, 2
        while candidate in taken:
            candidate, n = f"{slug}-{n}", n + 1
        return candidate

    def _change(self, slug: str, by: Actor, action: str) -> dict:
        m = self._manifest(slug)
        check(by, m["owner"], action, f"dataset {m['name']!r}")
        return m

    def _write(self, slug: str, m: dict) -> DatasetInfo:
        path = self.root / slug / MANIFEST
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(m, indent=1))
        os.replace(tmp, path)
        return self._info(slug, m)

    def add_class(self, slug: str, name: str, by: Actor) -> DatasetInfo:
        m = self._change(slug, by, "change")
        try:
            label = clean_class(name)
        except UploadError as err:
            raise DatasetError(str(err)) from None
        if label.lower() in (c.lower() for c in m["classes"]):
            raise DatasetError(f"class {label!r} exists already")
        m["classes"] = sorted([*m["classes"], label])
        return self._write(slug, m)

    def label(self, slug: str, where: str, label: str, by: Actor, split: str = "labeled") -> DatasetInfo:
        """Moves one unlabeled image into split/label/ (split: labeled or test); undo moves it back."""
        m = self._change(slug, by, "label")
        if split not in ("labeled", "test"):
            raise DatasetError(f"split {split!r} is not labeled or test")
        if label not in m["classes"]:
            raise DatasetError(f"class {label!r} is not one of {', '.join(m['classes']) or 'the classes (add one)'}")
        if not where.startswith("unlabeled/") or where not in m["files"]:
            raise DatasetError(f"{where} is not an unlabeled image of this dataset (labelled already?)")
        target = f"{split}/{label}/{where.rsplit('/', 1)[1]}"
        self._move(slug, m, where, target)
        m["history"].append([target, where])
        return self._write(slug, m)

    def undo(self, slug: str, by: Actor) -> tuple[DatasetInfo, str | None]:
        """Takes the last label back; (info, the image's path again, or None when there was nothing to undo)."""
        m = self._change(slug, by, "label")
        if not m["history"]:
            return self._info(slug, m), None
        labelled, before = m["history"].pop()
        self._move(slug, m, labelled, before)
        return self._write(slug, m), before

    def _move(self, slug: str, m: dict, where: str, target: str) -> None:
        source, dest = self.root / slug / where, self.root / slug / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, dest)
        m["files"][target] = m["files"].pop(where)

    def share(self, slug: str, shared: bool, by: Actor) -> DatasetInfo:
        if not by.teacher:
            raise PermissionDenied("only a teacher can share a dataset with the class")
        m = self._manifest(slug)
        m["shared"] = bool(shared)
        return self._write(slug, m)

    def delete(self, slug: str, by: Actor) -> None:
        self._change(slug, by, "delete")
        trash = self.root / f".deleting-{secrets.token_hex(6)}"
        os.rename(self.root / slug, trash)  # gone from the list at once, removed after
        shutil.rmtree(trash, ignore_errors=True)

    def export_zip(self, slug: str, by: Actor) -> bytes:
        """The dataset as a zip in the layout an upload reads back (and any folder-dataset tool)."""
        m = self._readable(slug, by)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:  # PNGs do not compress further
            for where in sorted(m["files"]):
                archive.write(self.root / slug / where, f"{slug}/{where}")
        return out.getvalue()
