"""What an upload holds, read before anything is written: a zip (class folders, the labeled/test/unlabeled
layout, or a flat set of images) or loose image files, checked against limits and decoded into small
square pixels (core.datasets.images).

Untrusted input: a zip's central directory is read first, and an upload with too many members, too many
unpacked bytes (a zip bomb declares them there, and zipfile never inflates a member past its declared
size) or a member path that leaves the archive (`../x`, `/etc/x`) is refused as a whole. Members that are
not readable images are skipped, each with its reason, so that one stray file does not cost the rest.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from core.data.folder import IMAGE_SUFFIXES
from core.data.splits import DataError
from core.datasets.images import ImageRejected, square_pixels

LABELED_NAMES = ("labeled", "labelled", "train")
UNLABELED_NAMES = ("unlabeled", "unlabelled")
IGNORED = ("__MACOSX", "Thumbs.db", "desktop.ini")
MAX_CLASS_NAME = 40


class UploadError(DataError):
    """The upload as a whole is refused; the one-line message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    files: int = 20_000  # members of a zip, or files of one upload
    unpacked_bytes: int = 1_000_000_000  # what the members declare once inflated, all together
    member_bytes: int = 60_000_000  # one member (a 48-megapixel JPEG is about 20 MB)


@dataclass(frozen=True)
class IncomingImage:
    split: str  # labeled | test | unlabeled
    label: str | None  # the class folder's name (None: unlabeled)
    stem: str  # the original file name without its suffix, for the user's sake
    pixels: np.ndarray  # size x size x 3 uint8
    digest: str  # sha1 of the pixels: the same picture twice has the same digest


@dataclass
class Incoming:
    size: int  # every image is size x size: the dataset's resolution
    images: list[IncomingImage] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (member, why)

    def classes(self) -> list[str]:
        return sorted({i.label for i in self.images if i.label is not None})

    def count(self, split: str) -> int:
        return sum(i.split == split for i in self.images)


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} KB"


def _unreadable(name: str, size: int, limits: Limits) -> str | None:
    """Why a member is skipped before it is read (not an image file, too large), or None."""
    if PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
        return "not an image file"
    if size > limits.member_bytes:
        return f"{_size(size)}, more than the {_size(limits.member_bytes)} allowed per file"
    return None


def clean_class(name: str) -> str:
    """A class name as a folder may hold it; raises UploadError naming what is wrong with it."""
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > MAX_CLASS_NAME or cleaned.startswith(".") or any(c in cleaned for c in "/\\:"):
        raise UploadError(
            f"class name {name!r} cannot be used: give 1 to {MAX_CLASS_NAME} characters, without / \\ : or a "
            "leading dot"
        )
    if cleaned.lower() in (*UNLABELED_NAMES, "test", *LABELED_NAMES):
        raise UploadError(f"class name {name!r} is reserved for a split; choose another name")
    return cleaned


def _parts(name: str) -> tuple[str, ...]:
    """A member's path parts; UploadError for one that would leave the archive."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise UploadError(f"the zip holds a member with an absolute path ({name[:80]}): refused, nothing was written")
    parts = tuple(p for p in PurePosixPath(unified).parts if p not in ("", "."))
    if ".." in parts:
        raise UploadError(f"the zip holds a member whose path leaves it ({name[:80]}): refused, nothing was written")
    return parts


def _ignored(parts: tuple[str, ...]) -> bool:
    return any(p.startswith(".") or p in IGNORED for p in parts)


def _strip_common_root(paths: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """A zip of a folder puts everything under that folder's name: the layout starts below it."""
    while paths and all(len(p) > 1 for p in paths) and len({p[0] for p in paths}) == 1:
        paths = [p[1:] for p in paths]
    return paths


def place(parts: tuple[str, ...], standard: bool) -> tuple[str, str | None]:
    """(split, class) of a member path below the layout's root; UploadError for a class name that cannot be."""
    top = parts[0].lower() if len(parts) > 1 else ""
    if len(parts) == 1 or top in UNLABELED_NAMES:
        return "unlabeled", None
    if standard:
        if top in (*LABELED_NAMES, "test") and len(parts) >= 3:
            return ("test" if top == "test" else "labeled"), clean_class(parts[1])
        raise UploadError(
            f"{'/'.join(parts)[:80]} is outside labeled/<class>/, test/<class>/ and unlabeled/: move it into one of "
            "them"
        )
    return "labeled", clean_class(parts[0])


def _decode(incoming: Incoming, name: str, data: bytes, split: str, label: str | None, size: int) -> None:
    try:
        pixels = square_pixels(data, size)
    except ImageRejected as why:
        incoming.skipped.append((name, str(why)))
        return
    stem = PurePosixPath(name.replace("\\", "/")).stem[:60]
    incoming.images.append(IncomingImage(split, label, stem, pixels, hashlib.sha1(pixels.tobytes()).hexdigest()))


def _nothing_left(incoming: Incoming, what: str) -> Incoming:
    if not incoming.images:
        reasons = "; ".join(f"{n}: {why}" for n, why in incoming.skipped[:3])
        raise UploadError(f"{what} holds no image this app can read{f' ({reasons})' if reasons else ''}")
    return incoming


def read_zip(data: bytes, size: int, limits: Limits = Limits(), name: str = "the upload") -> Incoming:
    """Every image of a zip, placed by its folders, decoded at size x size."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise UploadError(f"{name} is not a zip file: upload a .zip of folders, or the image files themselves")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as err:
        raise UploadError(f"{name} is a damaged zip ({err}): zip the folder again") from None
    if len(members) > limits.files:
        raise UploadError(f"{name} holds {len(members):,} files, more than the {limits.files:,} allowed: split it")
    declared = sum(m.file_size for m in members)
    if declared > limits.unpacked_bytes:
        raise UploadError(
            f"{name} unpacks to {declared / 1e6:,.0f} MB, more than the {limits.unpacked_bytes / 1e6:,.0f} MB "
            "allowed (a zip bomb, or too large a dataset): refused before anything was written"
        )
    parts = [_parts(m.filename) for m in members]  # refuses ../ and absolute paths before anything is read
    kept = [(m, p) for m, p in zip(members, parts, strict=True) if not _ignored(p)]
    paths = _strip_common_root([p for _, p in kept])
    standard = any(len(p) > 1 and p[0].lower() in (*LABELED_NAMES, "test") for p in paths)
    incoming = Incoming(size)
    for (member, _), path in zip(kept, paths, strict=True):
        shown = "/".join(path)
        if why := _unreadable(shown, member.file_size, limits):
            incoming.skipped.append((shown, why))
            continue
        split, label = place(path, standard)
        try:
            raw = archive.read(member)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as err:  # CRC error, encrypted member
            incoming.skipped.append((shown, f"cannot be unpacked ({str(err)[:60]})"))
            continue
        _decode(incoming, shown, raw, split, label, size)
    return _nothing_left(incoming, name)


def read_files(files: Iterable[tuple[str, bytes]], size: int, limits: Limits = Limits()) -> Incoming:
    """Loose image files (a multi-file upload): all unlabeled, to be labelled in the app."""
    files = list(files)
    if len(files) > limits.files:
        raise UploadError(f"{len(files):,} files is more than the {limits.files:,} allowed at once: upload a zip")
    total = sum(len(data) for _, data in files)
    if total > limits.unpacked_bytes:
        raise UploadError(f"{total / 1e6:,.0f} MB is more than the {limits.unpacked_bytes / 1e6:,.0f} MB allowed")
    incoming = Incoming(size)
    for name, data in files:
        if why := _unreadable(name, len(data), limits):
            incoming.skipped.append((name, why))
        else:
            _decode(incoming, name, data, "unlabeled", None, size)
    return _nothing_left(incoming, "the upload")
