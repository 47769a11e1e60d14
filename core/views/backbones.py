"""What a backbone is and what its pretraining buys: the facts the Train page shows beside the chosen
architecture, and the Compare view of transfer accuracy per backbone and weights (mean and spread over seeds).

Offline, only the stand-in (a MobileNetV2 converted from an 8-bit TFLite model, ../shared/weights) has
ImageNet weights: every other backbone's figure needs its weights downloaded. Both views say so.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from core.models import REGISTRY, shape_only
from core.models import torchvision_zoo as zoo
from core.runs.record import RunRecord
from core.views.charts import accuracy_frame

STAND_IN_NOTE = (
    "Offline, ImageNet weights exist only for the MobileNetV2 stand-in (converted from an 8-bit TFLite model); "
    "other backbones' figures need torchvision's download, so on this server they may be missing."
)


@lru_cache(maxsize=256)
def parameter_count(arch: str) -> int:
    """Parameters of the network: a torchvision one's from its weights' metadata (with its ImageNet head),
    another counted on a build without values (core.models.shape_only)."""
    entry = REGISTRY[arch]
    if entry.tv_name is not None:
        return zoo.weights_info(entry.tv_name).params
    return sum(p.numel() for p in shape_only(arch).parameters())


def backbone_facts(arch: str, resolution: int, seconds_per_image: float | None) -> str:
    """One line for the Train page: ImageNet top-1 of the weights, parameters, and this machine's speed at
    the chosen resolution (measured by a worker once; None: not measured yet)."""
    entry = REGISTRY[arch]
    if entry.pretrained is None:
        parts = ["no ImageNet weights (trains from random initialisation or a .pth file)"]
    elif entry.is_foundation:  # pretrained on something else than ImageNet
        parts = [f"{entry.pretraining} weights, from the Hugging Face Hub (no ImageNet top-1 to show)"]
    else:
        info = zoo.weights_info(entry.tv_name)
        top1 = f"ImageNet top-1 {info.top1:.1f}%" if info.top1 is not None else "ImageNet weights"
        parts = [f"{top1} ({info.name}, at {info.min_size} px)"]
    count = parameter_count(arch)
    parts.append(f"{count / 1e6:.1f}M parameters" if count >= 1e5 else f"{count:,} parameters")
    if seconds_per_image:
        parts.append(f"this machine: {1 / seconds_per_image:,.0f} images/s at {resolution} px (measured)")
    else:
        parts.append(f"this machine's images/s at {resolution} px: measured with the estimate below")
    return " · ".join(parts)


def published_weights(arch: str) -> tuple[str, str]:
    """The Train page's choice of an architecture's published weights, and what downloads and caches them."""
    entry = REGISTRY[arch]
    if entry.is_foundation:
        return f"{entry.pretraining} weights (download)", "the Hugging Face Hub"
    return "torchvision ImageNet weights (download)", "torchvision"


def weights_label(weights: str, arch: str | None = None) -> str:
    """How a run's weights read in a chart: never a server path, a file by its name."""
    if weights == "imagenet":
        return REGISTRY[arch].pretraining if arch in REGISTRY else "ImageNet (torchvision)"
    return f"file {Path(weights).name}" if weights else "random init"


def backbone_label(r: RunRecord) -> str:
    c = r.config
    return f"{c.arch} · {weights_label(c.weights, c.arch)} · {c.finetune} · {c.resolution} px"


def pretraining_frame(runs: list[RunRecord]) -> pd.DataFrame:
    """One row per transfer run with an accuracy, labelled by its backbone, weights and fine-tuning; seeds
    of one recipe pool (columns: configuration, seed, test_acc, as charts.accuracy_bars reads)."""
    return accuracy_frame([r for r in runs if r.config.method == "transfer"], label=backbone_label)
