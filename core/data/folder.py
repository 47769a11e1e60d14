"""A folder dataset: `labeled/<class>/*`, `test/<class>/*` and optionally `unlabeled/**`, decoded once into
uint8 tensors and cached in a cache folder of its own (datasets may be read-only), keyed by a fingerprint
of every file's path, size and mtime. The class folders inside `unlabeled/` are hidden ground truth: they
become `unlabeled_hidden_y`, which only diagnostics read."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from core.data.splits import CACHE_VERSION, DataError, ProgressFn, Splits, read_cache, save_cache

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


# A CIFAR-sized dataset never needs more; anything larger is refused before it is decoded.
MAX_IMAGE_PIXELS = 4096 * 4096
MANIFEST = "manifest.json"  # a dataset uploaded in the app (core.datasets.library): its name and resolution


def read_manifest(root: Path) -> dict | None:
    """The manifest of an uploaded dataset, None for a plain folder dataset (or a damaged manifest)."""
    try:
        manifest = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _class_folders(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise DataError(
            f"missing folder {split_dir}: a folder dataset needs labeled/<class>/ and test/<class>/ "
            "with one subfolder per class"
        )
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir} has no class subfolders: put images in {split_dir}/<class>/")
    return classes


def _image_files(folder: Path) -> list[str]:
    """Image files below folder, ordered by file name. Plain strings and os.walk: for 50,000 files,
    Path objects and rglob cost over a second on every load."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [
            (name, os.path.join(dirpath, name))
            for name in filenames
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
        ]
    found.sort()
    return [path for _, path in found]


def _decode(path: str, size: int) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise DataError(
                    f"{path} is {img.width}x{img.height} pixels, too large for this app "
                    f"(at most {MAX_IMAGE_PIXELS} pixels); resize or remove it"
                )
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
            data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path}: {err}. Remove or replace the file.") from None
    return data.reshape(size, size, 3).permute(2, 0, 1)


def _decode_all(paths: list[str], size: int, progress: ProgressFn | None, what: str) -> torch.Tensor:
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    # PIL releases the GIL while decoding, so threads use both cores without pickling tensors.
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        for i, img in enumerate(pool.map(lambda p: _decode(p, size), paths, chunksize=256)):
            out[i] = img
            if progress and i % 2000 == 0:
                progress(i / max(1, len(paths)), f"Decoding {what}: {i:,} / {len(paths):,}")
    return out


def _labeled_files(split_dir: Path, names: list[str], classes: list[str]) -> tuple[list[str], list[int]]:
    """The images of split_dir/<name>/ for each of names, labelled by their index in classes."""
    files, labels = [], []
    for name in names:
        found = _image_files(split_dir / name)
        if not found:
            raise DataError(f"class folder {split_dir / name} holds no images; add images or remove it")
        files += found
        labels += [classes.index(name)] * len(found)
    # Order by file name across classes: for train_NNNNN names that is the original index order.
    order = sorted(range(len(files)), key=lambda i: (os.path.basename(files[i]), files[i]))
    return [files[i] for i in order], [labels[i] for i in order]


def _fingerprint(root: Path, files: list[str], size: int) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION}:{size}".encode())
    prefix = len(str(root))
    for p in files:
        st = os.stat(p)
        digest.update(f"{p[prefix:]}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def load_folder(root: Path, n_labeled: int, size: int, cache_dir: Path, progress: ProgressFn | None) -> Splits:
    if not root.is_dir():
        raise DataError(
            f"dataset folder {root} does not exist: pass --dataset cifar10 or a folder holding "
            "labeled/<class>/ and test/<class>/"
        )
    manifest = read_manifest(root)
    if manifest is not None:  # uploaded in the app: kept at its own resolution, labelled there
        size = int(manifest.get("resolution", size))
        if not (root / "labeled").is_dir():
            raise DataError(
                f"dataset {manifest.get('name', root.name)!r} has no labeled image yet: label a few on the "
                "Your images page"
            )
    classes = _class_folders(root / "labeled")
    # Without test/, runs are scored by cross-validation over the labeled images (core.runs.crossval).
    test_classes = _class_folders(root / "test") if (root / "test").is_dir() else []
    # An uploaded dataset may have a test set of some classes only; a plain folder names the same classes twice.
    if test_classes and (set(test_classes) - set(classes) if manifest is not None else test_classes != classes):
        only_test = sorted(set(test_classes) - set(classes))
        only_labeled = sorted(set(classes) - set(test_classes))
        raise DataError(
            f"the class folders of {root / 'labeled'} and {root / 'test'} differ (only in test: "
            f"{only_test or 'none'}; only in labeled: {only_labeled or 'none'}); give both the same classes"
        )
    labeled_files, labeled_y = _labeled_files(root / "labeled", classes, classes)
    test_files, test_y = _labeled_files(root / "test", test_classes, classes)
    unlabeled_dir = root / "unlabeled"
    unlabeled_files = _image_files(unlabeled_dir) if unlabeled_dir.is_dir() else []
    n_labeled = n_labeled or len(labeled_files)
    if manifest is not None:  # labelled in the app: every labeled image, whatever a config's default says
        n_labeled = len(labeled_files)
    if n_labeled > len(labeled_files):
        raise DataError(
            f"n_labeled={n_labeled} is larger than the {len(labeled_files)} images in {root / 'labeled'}; lower it"
        )

    all_files = labeled_files + test_files + unlabeled_files
    key = _fingerprint(root, all_files, size)
    cache_file = cache_dir / f"folder-{key}.pt"
    tensors = read_cache(cache_file)
    if tensors is None:
        tensors = {
            "labeled_x": _decode_all(labeled_files, size, progress, "labeled images"),
            "test_x": _decode_all(test_files, size, progress, "test images"),
            "unlabeled_x": _decode_all(unlabeled_files, size, progress, "unlabeled images"),
        }
        save_cache(cache_file, tensors)
    hidden = _hidden_labels(unlabeled_dir, unlabeled_files, classes)
    n = n_labeled
    return Splits(
        labeled_x=tensors["labeled_x"][:n],
        labeled_y=torch.tensor(labeled_y[:n], dtype=torch.long),
        # Labeled images beyond n_labeled join neither split: they are simply not used.
        unlabeled_x=tensors["unlabeled_x"],
        unlabeled_hidden_y=hidden,
        test_x=tensors["test_x"],
        test_y=torch.tensor(test_y, dtype=torch.long),
        classes=tuple(classes),
        source=str(root),
        fingerprint=f"folder-{key}-{n}",
        name=str(manifest.get("name", root.name)) if manifest is not None else root.name,
    )


def _hidden_labels(unlabeled_dir: Path, files: list[str], classes: list[str]) -> torch.Tensor | None:
    """Ground truth read from unlabeled/<class>/ folder names, when every file sits in one; else None."""
    index = {name: i for i, name in enumerate(classes)}
    prefix = len(str(unlabeled_dir)) + 1
    labels = []
    for p in files:
        top, sep, _ = p[prefix:].partition(os.sep)
        if not sep or top not in index:
            return None
        labels.append(index[top])
    return torch.tensor(labels, dtype=torch.long) if files else None
