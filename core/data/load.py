"""`load_splits`: the small-data splits of the dataset in use, CIFAR-10 (torchvision's download) or a folder."""

from __future__ import annotations

import os
from pathlib import Path

from core import settings
from core.data.cifar import load_cifar10
from core.data.folder import load_folder
from core.data.splits import ProgressFn, Splits


def default_data_dir() -> Path:
    return settings.current().data_dir


def default_cache_dir() -> Path:
    return settings.current().cache_dir


def dataset_from_env() -> str:
    return settings.current().dataset


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
        return load_cifar10(root, n_labeled or 100, download, progress)
    return load_folder(Path(source), n_labeled, image_size, cache, progress)
