"""Test fixtures: a tiny synthetic folder dataset (3 classes told apart by colour, 32x32 PNGs) and a
tiny registered model, so that a training test takes a fraction of a second."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn

from core.models import ModelEntry, register_model

CLASSES = ("c0_red", "c1_green", "c2_blue")  # sorted order = channel order
TINY = "tiny_cnn"


def tiny_cnn() -> nn.Module:
    """Two convolutions and a linear layer: enough for colour classes, ~1k parameters."""
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(16, 10),
    )  # fmt: skip
    return net


def _split_tiny(m: nn.Module):
    dim = m[-1].in_features
    return nn.Sequential(*list(m)[:-1]), dim, m[3]


register_model(TINY, ModelEntry(tiny_cnn, None, _split_tiny, "a tiny CNN for tests"))


def make_image(label: int, rng: np.random.Generator, size: int = 32) -> Image.Image:
    base = np.full((size, size, 3), 60, dtype=np.int16)
    base[..., label] = 200  # the class is the dominant channel: learnable in a few steps
    noise = rng.integers(-40, 40, size=(size, size, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def build_dataset(root: Path, labeled: int = 10, test: int = 10, unlabeled: int = 20, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    index = 0
    for split, per_class in (("labeled", labeled), ("test", test), ("unlabeled", unlabeled)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(per_class):
                make_image(label, rng).save(folder / f"img_{index:05d}.png")
                index += 1
    return root


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def splits(dataset_dir, tmp_path_factory):
    from core.data import load_splits

    return load_splits(dataset_dir, n_labeled=30, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> str:
    """A randomly initialised tiny_cnn saved as a .pth state_dict: a "pretrained" backbone offline."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.pth"
    torch.save(tiny_cnn().state_dict(), path)
    return str(path)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test reads the developer's ./runs, ./data or ./weights."""
    monkeypatch.setenv("SMALLDATA_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SMALLDATA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SMALLDATA_WEIGHTS_DIR", str(tmp_path / "weights"))
