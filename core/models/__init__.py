"""The model registry: `create_model(name, num_classes, weights, resolution, normalize)` and `list_models()`.

Every model is a `SmallDataNet`: `prep` (upsampling and normalisation of [0, 1] images), `backbone`
(image -> pooled feature vector) and `head` (a fresh Linear layer). That split is what lets a linear
probe compute the backbone's features once, and lets "last" fine-tuning name the last block.
Pretrained weights come from torchvision's weights API ("imagenet", downloaded and cached by
torchvision) or from a local state_dict file, always loaded with `weights_only=True`.

Every torchvision classifier comes from `torchvision_zoo`; CLIP and DINOv2 image towers from `foundation`,
when its optional libraries are installed. One file per CIFAR network (`resnet_cifar`, `convnet_cifar`);
`spectrum` holds the float64 covariance and eigendecomposition that the whitened stem (and the methods'
whitened kNN graph) are built on; `checkpoints` loads a local weights file and names it by content;
`normalization` holds the input statistics of published weights.

May import: core.settings, core.plugins, core.access, core.data, core.datasets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core import settings
from core.models import foundation
from core.models import torchvision_zoo as zoo
from core.models.checkpoints import ModelError, load_checkpoint, weights_id  # noqa: F401  (weights_id: API)
from core.models.convnet_cifar import convnet_cifar
from core.models.normalization import IMAGENET_MEAN, IMAGENET_STD
from core.models.resnet_cifar import resnet18_cifar


class InputAdapter(nn.Module):
    """[0, 1] images at their stored size -> the model's resolution, optionally ImageNet-normalised."""

    def __init__(self, resolution: int, normalize: bool, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        super().__init__()
        self.resolution = resolution
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.resolution:
            x = F.interpolate(x, size=self.resolution, mode="bilinear", align_corners=False)
        if self.normalize:
            x = (x - self.mean) / self.std
        return x


class SmallDataNet(nn.Module):
    def __init__(
        self, prep: InputAdapter, backbone: nn.Module, feature_dim: int, num_classes: int, last: nn.Module
    ) -> None:
        super().__init__()
        self.prep = prep
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.last = [last]  # a list, so that it is not registered twice as a submodule
        self.flip_test = False  # in eval mode, average the logits of each image and its mirror image

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.prep(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.features(x))
        if self.flip_test and not self.training:
            logits = (logits + self.head(self.features(x.flip(3)))) / 2
        return logits

    def whiten_stem(self, images: torch.Tensor) -> None:
        """Sets the first layer from these uint8 images and freezes it: models whose entry says `whitens`
        (convnet_cifar.ConvNetCifar.whiten_stem). Call it after set_trainable, which would unfreeze it."""
        self.backbone.whiten_stem(self.prep(images.float() / 255))

    def set_trainable(self, finetune: str) -> None:
        """head: only the head learns; last: the last block too; all: everything."""
        for p in self.backbone.parameters():
            p.requires_grad_(finetune == "all")
        if finetune == "last":
            for p in self.last[0].parameters():
                p.requires_grad_(True)


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[[], nn.Module]  # the bare model, random init
    tv_name: str | None  # torchvision's name for weights="imagenet"
    split: Callable[[nn.Module], tuple[nn.Module, int, nn.Module]]  # -> backbone, feature dim, last block
    summary: str
    whitens: bool = False  # its stem can be set from the labeled images (config field whiten_stem)
    min_resolution: int = 16  # the smallest input side it runs at, px
    fixed_resolution: bool = False  # it runs at min_resolution only (ViT's positional embeddings)
    pretrained: Callable[[], nn.Module] | None = None  # the model with its published weights (weights="imagenet")
    pretraining: str = "ImageNet (torchvision)"  # what those weights learnt from, for labels
    adapt_state: Callable[[dict, nn.Module], dict] | None = None  # a local checkpoint -> the model's state_dict
    mean: tuple[float, float, float] = IMAGENET_MEAN  # normalize=True: the statistics its weights expect
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def is_foundation(self) -> bool:  # a tower of core.models.foundation: published weights, not torchvision's
        return self.tv_name is None and self.pretrained is not None


def _split_cifar(last: str) -> Callable[[nn.Module], tuple[nn.Module, int, nn.Module]]:
    """The CIFAR networks (core/models/*_cifar.py) end in `linear`; `last` names their last block."""

    def split(m: nn.Module) -> tuple[nn.Module, int, nn.Module]:
        dim = m.linear.in_features
        m.linear = nn.Identity()
        return m, dim, getattr(m, last)

    return split


def _split_features_pool(m: nn.Module) -> tuple[nn.Module, int, nn.Module]:
    """mobilenet_v2 as its recipes were measured: features -> average pool -> flatten (no dropout)."""
    dim = m.classifier[-1].in_features
    backbone = nn.Sequential(m.features, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    return backbone, dim, m.features[-2:]


class PooledStages(nn.Module):
    """Runs a backbone's blocks in order and concatenates the average-pooled outputs of some of them.
    Earlier blocks keep detail that the last one, tuned to ImageNet's classes, has pooled away: a linear
    probe on MobileNetV2 at 160 px got 51.3% on the validation split with blocks 10, 13, 16, 17 and 18,
    against 49.0% with the last alone (3 seeds each)."""

    def __init__(self, blocks: nn.Sequential, taps: tuple[int, ...]) -> None:
        super().__init__()
        self.blocks, self.taps = blocks, taps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                pooled.append(x.mean((2, 3)))
        return torch.cat(pooled, 1)


MOBILENET_V2_TAPS = (10, 13, 16, 17, 18)  # the ends of its 64-, 96-, 160-, 320- and 1280-channel stages


def _split_mobilenet_v2_stages(m: nn.Module) -> tuple[nn.Module, int, nn.Module]:
    dim = sum(m.features[i].out_channels for i in MOBILENET_V2_TAPS)
    return PooledStages(m.features, MOBILENET_V2_TAPS), dim, m.features[-2:]


def torchvision_entry(name: str, split=None, summary: str | None = None, tv_name: str | None = None) -> ModelEntry:
    """A torchvision classifier (core.models.torchvision_zoo), split generically unless `split` is given."""
    tv_name = tv_name or name
    info = zoo.weights_info(tv_name)
    return ModelEntry(
        partial(zoo.build, tv_name), tv_name, split or zoo.split_classifier, summary or zoo.summary(tv_name),
        min_resolution=max(16, info.min_size), fixed_resolution=info.fixed_size,
        pretrained=partial(zoo.build, tv_name, pretrained=True),
    )  # fmt: skip


def foundation_entry(name: str) -> ModelEntry:
    """A CLIP or DINOv2 image tower (core.models.foundation)."""
    f = foundation.FOUNDATION[name]
    return ModelEntry(
        partial(foundation.build, name), None, foundation.split, foundation.summary(name),
        min_resolution=f.min_resolution, fixed_resolution=f.fixed_resolution,
        pretrained=partial(foundation.build, name, pretrained=True), pretraining=f.pretraining,
        adapt_state=partial(foundation.adapt_state, name), mean=f.mean, std=f.std,
    )  # fmt: skip


REGISTRY: dict[str, ModelEntry] = {
    "resnet18_cifar": ModelEntry(
        resnet18_cifar, None, _split_cifar("layer4"), "ResNet-18 for 32x32 (3x3 stem, no max-pool), 11.2M"
    ),
    "convnet_cifar": ModelEntry(
        convnet_cifar, None, _split_cifar("block3"), "Fast 8-layer CNN for 32x32 (airbench-style), 2.0M", whitens=True
    ),
    "resnet18": torchvision_entry("resnet18", partial(zoo.split_classifier, last="layer4")),
    # The offline stand-in's network (README, "Data and weights"): features -> average pool, as its recipes
    # were measured, and the pooled features of five of its stages.
    "mobilenet_v2": torchvision_entry("mobilenet_v2", _split_features_pool),
    "mobilenet_v2_stages": torchvision_entry(
        "mobilenet_v2_stages",
        _split_mobilenet_v2_stages,
        "MobileNetV2 (ImageNet), pooled features of five stages concatenated (1,920-d)",
        tv_name="mobilenet_v2",
    ),  # fmt: skip
}
# Every other torchvision ImageNet classifier, from torchvision's own registry.
REGISTRY |= {name: torchvision_entry(name) for name in zoo.torchvision_classifiers() if name not in REGISTRY}
# Foundation-model towers, where the foundation extra is installed.
REGISTRY |= {name: foundation_entry(name) for name in foundation.available()}


def list_models() -> list[str]:
    return list(REGISTRY)


def register_model(name: str, entry: ModelEntry) -> None:
    """Adds a model to the registry (a plug-in, or a test's tiny model)."""
    REGISTRY[name] = entry


def unregister_model(name: str) -> None:
    REGISTRY.pop(name, None)


def default_weights_dir() -> Path:
    return settings.current().weights_dir


def list_weight_files(folder: str | os.PathLike | None = None) -> list[Path]:
    folder = Path(folder) if folder else default_weights_dir()
    return sorted(folder.glob("*.pth")) if folder.is_dir() else []


def create_model(
    name: str,
    num_classes: int = 10,
    weights: str = "",
    resolution: int = 32,
    normalize: bool = False,
) -> SmallDataNet:
    """A registered model with a fresh `num_classes` head; weights: "", "imagenet" or a .pth path."""
    if name not in REGISTRY:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(REGISTRY)}")
    entry = REGISTRY[name]
    if weights == "imagenet":
        model = _published_weights(name, entry)
    else:
        model = entry.build()
        if weights:
            load_checkpoint(model, Path(weights), entry.adapt_state)
    backbone, dim, last = entry.split(model)
    prep = InputAdapter(resolution, normalize, entry.mean, entry.std)
    return SmallDataNet(prep, backbone, dim, num_classes, last)


def shape_only(name: str, num_classes: int = 10) -> SmallDataNet:
    """The model without its weights' values, for its sizes: built on the meta device, which allocates
    nothing (ViT-H/14 would take 30 s to initialise); a builder that reads its own tensors (RegNet's) is
    built for real."""
    try:
        with torch.device("meta"):
            return create_model(name, num_classes)
    except (NotImplementedError, RuntimeError):
        return create_model(name, num_classes)


@lru_cache(maxsize=128)
def feature_dim(name: str) -> int:
    """Length of the feature vector the model's head reads (1,920 for mobilenet_v2_stages)."""
    return shape_only(name).feature_dim


@lru_cache(maxsize=128)
def state_dict_bytes(name: str, num_classes: int = 10) -> int:
    """Bytes of a float32 state_dict of the model (what keep_weights writes beside a run)."""
    model = shape_only(name, num_classes)
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _published_weights(name: str, entry: ModelEntry) -> nn.Module:
    if entry.pretrained is None:
        raise ModelError(f"{name} has no ImageNet weights; train it from scratch or give a .pth file")
    try:
        return entry.pretrained()
    # URLError is an OSError; the Hugging Face Hub's "not in the local cache" is a FileNotFoundError and a ValueError
    except (OSError, RuntimeError, ValueError) as err:
        if entry.is_foundation:
            raise ModelError(
                f"could not download the published weights of {name} ({type(err).__name__}): they come from "
                f"{foundation.download_help(name)}; without network, save its state_dict (or the whole published "
                "checkpoint) with torch.save and give the file (--weights FILE.pth, or .pth files in "
                f"{default_weights_dir()} to pick in the app)"
            ) from None
        info = zoo.weights_info(entry.tv_name)
        raise ModelError(
            f"could not download the ImageNet weights of {name} ({type(err).__name__}): without network, put "
            f"{info.file_name} (from {info.url}) in {Path(torch.hub.get_dir()) / 'checkpoints'}, or give a "
            f"state_dict file (--weights FILE.pth, or .pth files in {default_weights_dir()} to pick in the app)"
        ) from None
