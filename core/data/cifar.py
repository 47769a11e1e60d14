"""CIFAR-10 from torchvision's on-disk format: the download (with its checksum) and the small-data split of it."""

from __future__ import annotations

import hashlib
import pickle
import tarfile
import urllib.request
from pathlib import Path

import torch

from core.data.splits import CIFAR10_CLASSES, DataError, ProgressFn, Splits, split_arrays

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


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


def load_cifar10(root: Path, n_labeled: int, download: bool, progress: ProgressFn | None) -> Splits:
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
