"""The small-data splits: labeled, unlabeled (hidden labels kept apart) and test, as uint8 tensors.

Two sources: torchvision's CIFAR-10 (downloaded into a data folder) and a folder dataset laid out as
`labeled/<class>/*`, `test/<class>/*` and optionally `unlabeled/**`. Decoding tens of thousands of
small images is the slow part, so a folder's decoded tensors are cached in a cache folder of their
own (datasets may be read-only), keyed by a fingerprint of every file's path, size and mtime.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
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
    # The unlabeled pool's own fingerprint where it differs from the split's (a cross-validation fold's pool is
    # its dataset's): frozen features of the pool are cached under it.
    pool_fingerprint: str = ""
    name: str = ""  # as the pages show it: "cifar10", a folder's name, an uploaded dataset's own name

    @property
    def label(self) -> str:
        return self.name or ("cifar10" if self.source == "cifar10" else Path(self.source).name)

    @property
    def unlabeled_fingerprint(self) -> str:
        return self.pool_fingerprint or self.fingerprint

    @property
    def cross_validated(self) -> bool:
        """No test set: a run's score is a k-fold cross-validation over the labeled images (core.runs.crossval)."""
        return len(self.test_y) == 0

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


def read_cache(path: Path) -> dict[str, torch.Tensor] | None:
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


VALIDATION_DRAW = 12345  # the seed of the split every recipe's comment refers to, unless it names another


def validation_splits(splits: Splits, n_val: int = 2000, draw: int = VALIDATION_DRAW) -> Splits:
    """For choosing hyperparameters without the test set: a fixed random part of the unlabeled pool,
    with its hidden labels, becomes the "test" split; the rest stays unlabeled. Needs hidden labels.
    draw: the seed of the random choice (another draw checks that a choice was not made for one split)."""
    if splits.unlabeled_hidden_y is None or len(splits.unlabeled_x) <= n_val:
        raise DataError("a validation split needs more than n_val unlabeled images with hidden labels")
    order = torch.randperm(len(splits.unlabeled_x), generator=torch.Generator().manual_seed(draw))
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
        fingerprint=f"{splits.fingerprint.rsplit('-', 1)[0]}val{n_val}"
        + ("" if draw == VALIDATION_DRAW else f"d{draw}")
        + f"-{len(splits.labeled_y)}",
    )
