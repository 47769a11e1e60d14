"""Every torchvision ImageNet classifier as a backbone, found through torchvision's own registry
(`torchvision.models.list_models`, `get_model_weights`) rather than one hand-written entry per model.

The split is generic: a classifier's classification layer is the last module, in the order the model
registers them, whose outputs are ImageNet's 1,000 classes (a Linear layer, or SqueezeNet's 1x1
convolution). It becomes an identity, so the backbone ends in the vector that layer read, with whatever
the model puts before it (ConvNeXt's LayerNorm, MaxViT's 512-d MLP, MobileNetV3's 1,024-d layer).
"last" fine-tuning trains the trailing layers that hold a tenth of the backbone's weights, unless an
entry names its last block (ResNet-18's layer4).

What the Train page says about a choice (ImageNet top-1, parameters, input size) is read from the
weights' own metadata, so it needs no download.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torchvision
from torch import nn
from torchvision.models import get_model, get_model_weights

IMAGENET_CLASSES = 1000
# Networks with auxiliary classifiers would return a tuple in training mode: built without them.
BUILD_OPTIONS = {"googlenet": {"aux_logits": False, "init_weights": False},
                 "inception_v3": {"aux_logits": False, "init_weights": False}}  # fmt: skip
# Positional embeddings (ViT) or window partitions (MaxViT) fix the input size to the weights' own.
FIXED_SIZE_PREFIXES = ("vit_", "maxvit_")
LAST_SHARE = 0.1  # "last" fine-tuning: the trailing layers that hold this share of the backbone's weights


@dataclass(frozen=True)
class WeightsInfo:
    """What torchvision's metadata says about a model's default ImageNet weights."""

    name: str  # e.g. "ConvNeXt_Tiny_Weights.IMAGENET1K_V1"
    top1: float | None  # ImageNet-1K top-1 accuracy, %
    params: int
    min_size: int  # smallest input side, px (for ViT and MaxViT: the only one)
    fixed_size: bool
    gflops: float | None
    file_mb: float | None
    url: str

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def torchvision_classifiers() -> list[str]:
    """The names of torchvision's image classifiers (not its detection, segmentation or video models)."""
    return [name for name in torchvision.models.list_models(module=torchvision.models)]


@cache
def weights_info(name: str) -> WeightsInfo:
    weights = get_model_weights(name).DEFAULT
    meta = weights.meta
    return WeightsInfo(
        name=f"{type(weights).__name__}.{weights.name}",
        top1=meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1"),
        params=int(meta["num_params"]),
        min_size=int(meta["min_size"][0]),
        fixed_size=name.startswith(FIXED_SIZE_PREFIXES),
        gflops=meta.get("_ops"),
        file_mb=meta.get("_file_size"),
        url=weights.url,
    )


def build_options(name: str) -> dict:
    options = dict(BUILD_OPTIONS.get(name, {}))
    if name.startswith("vit_"):  # random init at the size of the default weights (ViT-H/14's are 518 px)
        options["image_size"] = weights_info(name).min_size
    return options


def build(name: str, pretrained: bool = False) -> nn.Module:
    """torchvision's classifier `name`, at random init or with its default ImageNet weights (downloaded by
    torchvision into its cache the first time)."""
    return get_model(name, weights="DEFAULT" if pretrained else None, **build_options(name))


def classification_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The last module that maps to ImageNet's 1,000 classes: (its dotted name, the module)."""
    found = None
    for name, module in model.named_modules():
        outputs = getattr(module, "out_features", None) if isinstance(module, nn.Linear) else None
        if isinstance(module, nn.Conv2d):
            outputs = module.out_channels
        if outputs == IMAGENET_CLASSES:
            found = (name, module)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no layer with {IMAGENET_CLASSES} outputs to replace")
    return found


def trailing_layers(model: nn.Module, share: float = LAST_SHARE) -> nn.ModuleList:
    """The last leaf modules with weights (in registration order) that together hold `share` of them."""
    leaves = [m for m in model.modules() if not list(m.children()) and any(True for _ in m.parameters())]
    total = sum(p.numel() for p in model.parameters())
    chosen, held = [], 0
    for leaf in reversed(leaves):
        chosen.append(leaf)
        held += sum(p.numel() for p in leaf.parameters())
        if held >= share * total:
            break
    return nn.ModuleList(reversed(chosen))


def split_classifier(model: nn.Module, last: str | None = None) -> tuple[nn.Module, int, nn.Module]:
    """(backbone, feature dim, last block) of a torchvision classifier: its classification layer is replaced
    by an identity; `last` names the block "last" fine-tuning trains (default: trailing_layers)."""
    name, layer = classification_layer(model)
    dim = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
    model.set_submodule(name, nn.Identity())
    return model, dim, model.get_submodule(last) if last else trailing_layers(model)


def summary(name: str) -> str:
    info = weights_info(name)
    top1 = f", ImageNet top-1 {info.top1:.1f}%" if info.top1 is not None else ""
    size = f", {info.min_size} px only" if info.fixed_size else ""
    return f"torchvision {name} ({info.params / 1e6:.1f}M parameters{top1}{size})"
