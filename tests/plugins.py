"""A plug-in for the tests (imported through $SMALLDATA_PLUGINS by worker processes too): a tiny
registered model, so that a training test takes a fraction of a second."""

from torch import nn

from core.models import ModelEntry, register_model

TINY = "tiny_cnn"


def tiny_cnn() -> nn.Module:
    """Two convolutions and a linear layer: enough for colour classes, ~1.6k parameters."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(16, 10),
    )  # fmt: skip


def _split_tiny(m: nn.Module):
    dim = m[-1].in_features
    return nn.Sequential(*list(m)[:-1]), dim, m[3]


register_model(TINY, ModelEntry(tiny_cnn, None, _split_tiny, "a tiny CNN for tests"))
