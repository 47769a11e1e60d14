"""The small-data splits: labeled, unlabeled (hidden labels kept apart) and test, as uint8 tensors.

Two sources: torchvision's CIFAR-10 (downloaded into a data folder) and a folder dataset laid out as
`labeled/<class>/*`, `test/<class>/*` and optionally `unlabeled/**`. Decoding tens of thousands of
small images is the slow part, so a folder's decoded tensors are cached in a cache folder of their
own (datasets may be read-only), keyed by a fingerprint of every file's path, size and mtime.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# A CIFAR-sized dataset never needs more; anything larger is refused before it is decoded.
MAX_IMAGE_PIXELS = 4096 * 4096
CACHE_VERSION = 1

ProgressFn = Callable[[float, str], None]  # (fraction done in [0, 1], message)


class DataError(ValueError):
    """The dataset is missing or malformed; the message names the file or folder and the fix."""


@dataclass(frozen=True)
class Splits:
    labeled_x: torch.Tensor  # N x 3 x H x W, uint8
    labeled_y: torch.Tensor  # N, int64
    unlabeled_x: torch.Tensor  # M x 3 x H x W, uint8
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    source: str  # "cifar10" or the folder path
    fingerprint: str  # "<content id>-<n_labeled>": feature caches and runs are keyed by it
    # Ground truth of the unlabeled images, for diagnostics only (pseudo-label accuracy); None when
    # unknown. Training code receives `unlabeled_x` alone.
    unlabeled_hidden_y: torch.Tensor | None = None

    @property
    def image_size(self) -> int:
        return int(self.labeled_x.shape[-1])

    def summary(self) -> dict[str, object]:
        counts = torch.bincount(self.labeled_y, minlength=len(self.classes)).tolist()
        return {
            "source": self.source,
            "labeled": len(self.labeled_y),
            "unlabeled": len(self.unlabeled_x),
            "test": len(self.test_y),
            "classes": list(self.classes),
            "labeled_per_class": dict(zip(self.classes, counts, strict=True)),
            "image_size": self.image_size,
        }


def default_data_dir() -> Path:
    return Path(os.environ.get("SMALLDATA_DATA_DIR", "data"))


def default_cache_dir() -> Path:
    return Path(os.environ.get("SMALLDATA_CACHE_DIR", str(default_data_dir() / "cache")))


def dataset_from_env() -> str:
    return os.environ.get("SMALLDATA_DATASET", "cifar10")


def load_splits(
    source: str | os.PathLike | None = None,
    *,
    n_labeled: int | None = None,
    image_size: int = 32,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: ProgressFn | None = None,
) -> Splits:
    """The small-data splits of `source`: "cifar10" or a folder path (default: $SMALLDATA_DATASET).

    n_labeled: how many labeled images; by default 100 for CIFAR-10 and all of a folder's labeled/.
    """
    source = str(source or dataset_from_env())
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if source == "cifar10":
        root = Path(data_dir) if data_dir else default_data_dir()
        return _load_cifar10(root, n_labeled or 100, download, progress)
    return _load_folder(Path(source), n_labeled, image_size, cache, progress)


# ---- CIFAR-10 through torchvision's on-disk format


def split_arrays(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    n_labeled: int,
    classes: tuple[str, ...],
    source: str,
) -> Splits:
    """The small-data split of a full training set: the first n_labeled labeled, the rest unlabeled."""
    if not 0 < n_labeled < len(train_y):
        raise DataError(
            f"n_labeled={n_labeled} must be between 1 and {len(train_y) - 1} (the training set has "
            f"{len(train_y)} images)"
        )
    digest = hashlib.sha256()
    for t in (train_x[:512], train_y, test_y):
        digest.update(t.contiguous().numpy().tobytes())
    return Splits(
        labeled_x=train_x[:n_labeled].contiguous(),
        labeled_y=train_y[:n_labeled].clone(),
        unlabeled_x=train_x[n_labeled:].contiguous(),
        unlabeled_hidden_y=train_y[n_labeled:].clone(),
        test_x=test_x.contiguous(),
        test_y=test_y.clone(),
        classes=classes,
        source=source,
        fingerprint=f"{source}-{digest.hexdigest()[:12]}-{n_labeled}",
    )


def download_cifar10(root: Path, progress: ProgressFn | None = None) -> None:
    """Download and unpack CIFAR-10 (python version, 163 MB) into root, reporting progress."""
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-python.tar.gz"
    partial = archive.with_suffix(".part")
    try:
        with urllib.request.urlopen(CIFAR10_URL, timeout=30) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if progress and total:
                    progress(done / total, f"Downloading CIFAR-10: {done >> 20} / {total >> 20} MB")
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"could not download CIFAR-10 from {CIFAR10_URL} ({err}). Without network, download "
            f"cifar-10-python.tar.gz elsewhere and unpack it into {root.resolve()} (so that "
            f"{root.resolve() / 'cifar-10-batches-py'} exists), or point SMALLDATA_DATASET at a folder "
            "dataset."
        ) from None
    if hashlib.md5(partial.read_bytes()).hexdigest() != CIFAR10_MD5:
        partial.unlink()
        raise DataError("the downloaded CIFAR-10 archive is corrupt (MD5 mismatch); try again")
    partial.rename(archive)
    if progress:
        progress(1.0, "Unpacking CIFAR-10")
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")


def _read_cifar_batches(folder: Path, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="latin1")  # torchvision's own format; a trusted download
        xs.append(torch.as_tensor(batch["data"]).reshape(-1, 3, 32, 32))
        ys.append(torch.as_tensor(batch.get("labels", batch.get("fine_labels"))))
    return torch.cat(xs).to(torch.uint8), torch.cat(ys).long()


def _load_cifar10(root: Path, n_labeled: int, download: bool, progress: ProgressFn | None) -> Splits:
    folder = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not all((folder / n).exists() for n in names):
        if not download:
            raise DataError(
                f"CIFAR-10 is not in {folder.resolve()}. Download it (the app's Home page has a button; "
                "on the command line, any train command downloads it), or unpack "
                f"cifar-10-python.tar.gz into {root.resolve()} by hand."
            )
        download_cifar10(root, progress)
    if progress:
        progress(1.0, "Reading CIFAR-10")
    train_x, train_y = _read_cifar_batches(folder, names[:5])
    test_x, test_y = _read_cifar_batches(folder, names[5:])
    return split_arrays(train_x, train_y, test_x, test_y, n_labeled, CIFAR10_CLASSES, "cifar10")


# ---- folder datasets


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


def _labeled_files(split_dir: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    files, labels = [], []
    for label, name in enumerate(classes):
        found = _image_files(split_dir / name)
        if not found:
            raise DataError(f"class folder {split_dir / name} holds no images; add images or remove it")
        files += found
        labels += [label] * len(found)
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


def _load_folder(root: Path, n_labeled: int, size: int, cache_dir: Path, progress: ProgressFn | None) -> Splits:
    if not root.is_dir():
        raise DataError(
            f"dataset folder {root} does not exist: pass --dataset cifar10 or a folder holding "
            "labeled/<class>/ and test/<class>/"
        )
    classes = _class_folders(root / "labeled")
    test_classes = _class_folders(root / "test")
    if test_classes != classes:
        only_test = sorted(set(test_classes) - set(classes))
        only_labeled = sorted(set(classes) - set(test_classes))
        raise DataError(
            f"the class folders of {root / 'labeled'} and {root / 'test'} differ (only in test: "
            f"{only_test or 'none'}; only in labeled: {only_labeled or 'none'}); give both the same classes"
        )
    labeled_files, labeled_y = _labeled_files(root / "labeled", classes)
    test_files, test_y = _labeled_files(root / "test", classes)
    unlabeled_dir = root / "unlabeled"
    unlabeled_files = _image_files(unlabeled_dir) if unlabeled_dir.is_dir() else []
    n_labeled = n_labeled or len(labeled_files)
    if n_labeled > len(labeled_files):
        raise DataError(
            f"n_labeled={n_labeled} is larger than the {len(labeled_files)} images in {root / 'labeled'}; lower it"
        )

    all_files = labeled_files + test_files + unlabeled_files
    key = _fingerprint(root, all_files, size)
    cache_file = cache_dir / f"folder-{key}.pt"
    tensors = _read_cache(cache_file)
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


def _read_cache(path: Path) -> dict[str, torch.Tensor] | None:
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True, mmap=True)
    except Exception:  # a truncated or foreign cache file is rebuilt, never trusted
        return None


def save_cache(path: Path, obj: object) -> None:
    """torch.save through a temporary file and an atomic rename: readers never see half a file.
    Caches are optional: a read-only or full disk only costs speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError:
        pass


def validation_splits(splits: Splits, n_val: int = 2000) -> Splits:
    """For choosing hyperparameters without the test set: a fixed random part of the unlabeled pool,
    with its hidden labels, becomes the "test" split; the rest stays unlabeled. Needs hidden labels."""
    if splits.unlabeled_hidden_y is None or len(splits.unlabeled_x) <= n_val:
        raise DataError("a validation split needs more than n_val unlabeled images with hidden labels")
    order = torch.randperm(len(splits.unlabeled_x), generator=torch.Generator().manual_seed(12345))
    val, rest = order[:n_val].sort().values, order[n_val:].sort().values
    return Splits(
        labeled_x=splits.labeled_x,
        labeled_y=splits.labeled_y,
        unlabeled_x=splits.unlabeled_x[rest],
        unlabeled_hidden_y=splits.unlabeled_hidden_y[rest],
        test_x=splits.unlabeled_x[val],
        test_y=splits.unlabeled_hidden_y[val],
        classes=splits.classes,
        source=f"{splits.source} (validation: {n_val} unlabeled images)",
        fingerprint=f"{splits.fingerprint.rsplit('-', 1)[0]}val{n_val}-{len(splits.labeled_y)}",
    )
