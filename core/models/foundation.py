"""Foundation-model image towers as backbones: CLIP through `open_clip`, DINOv2 through `timm`.

They are the optional `foundation` extra (pip install -e ".[foundation]"): without open_clip or timm their
entries are simply not registered. Their published weights come from the Hugging Face Hub ("imagenet" in a
config means a backbone's published pretraining, which for these is not ImageNet: each entry's summary
names it); offline, a local state_dict works as for any backbone, either the tower's own or the whole
published checkpoint (a CLIP checkpoint's text tower is dropped, DINOv2's original key names are mapped to
timm's by timm's own filter).

Each tower ends in the vector a linear probe reads: CLIP's projected image embedding (512-d for ViT-B/32),
DINOv2's class token after its last norm (384-d for ViT-S/14). "last" fine-tuning trains the last
transformer block.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from torch import nn

from core.models.normalization import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class Foundation:
    library: str  # "open_clip" or "timm"
    model: str  # the library's own name for the architecture
    tag: str  # its published weights
    pretraining: str  # what those weights learnt from, in words
    params_m: float  # parameters of the image tower, millions (counted on a build; tests check it)
    mean: tuple[float, float, float]  # the input normalisation the weights were trained with
    std: tuple[float, float, float]
    min_resolution: int
    fixed_resolution: bool  # CLIP's positional embeddings fix its input size; timm's DINOv2 interpolates them


FOUNDATION = {
    "clip_vit_b32": Foundation("open_clip", "ViT-B-32", "laion2b_s34b_b79k", "CLIP on LAION-2B (image-text pairs)",
                               87.8, CLIP_MEAN, CLIP_STD, 224, True),
    "dinov2_vits14": Foundation("timm", "vit_small_patch14_dinov2", "lvd142m", "DINOv2 on LVD-142M (self-supervised)",
                                22.1, IMAGENET_MEAN, IMAGENET_STD, 28, False),
    "dinov2_vitb14": Foundation("timm", "vit_base_patch14_dinov2", "lvd142m", "DINOv2 on LVD-142M (self-supervised)",
                                86.6, IMAGENET_MEAN, IMAGENET_STD, 28, False),
}  # fmt: skip


def available() -> list[str]:
    """The entries whose library is installed (found without importing it: importing open_clip takes seconds)."""
    return [name for name, f in FOUNDATION.items() if importlib.util.find_spec(f.library) is not None]


def build(name: str, pretrained: bool = False) -> nn.Module:
    """The image tower at random init, or with its published weights (downloaded from the Hugging Face Hub)."""
    f = FOUNDATION[name]
    if f.library == "open_clip":
        import open_clip

        return open_clip.create_model(f.model, pretrained=f.tag if pretrained else None).visual
    import timm

    # dynamic_img_size: the positional embeddings are interpolated to the run's resolution, as DINOv2 was meant
    # to be used; dynamic_img_pad: a side that is not a multiple of 14 is padded rather than refused.
    return timm.create_model(f"{f.model}.{f.tag}", pretrained=pretrained, num_classes=0, dynamic_img_size=True,
                             dynamic_img_pad=True)  # fmt: skip


def split(model: nn.Module) -> tuple[nn.Module, int, nn.Module]:
    """(backbone, feature dim, last block): the towers already end in their embedding."""
    if hasattr(model, "transformer"):  # open_clip's VisionTransformer
        return model, model.output_dim, model.transformer.resblocks[-1]
    return model, model.num_features, model.blocks[-1]  # timm's VisionTransformer


def adapt_state(name: str, state: dict, model: nn.Module) -> dict:
    """A local checkpoint as the tower's state_dict: the whole published checkpoint or the tower's own."""
    f = FOUNDATION[name]
    if f.library == "open_clip":
        if any(key.startswith("visual.") for key in state):
            return {key.removeprefix("visual."): value for key, value in state.items() if key.startswith("visual.")}
        return state
    from timm.models.vision_transformer import checkpoint_filter_fn

    return checkpoint_filter_fn(state, model)  # DINOv2's own key names (blocks.0.ls1.gamma, ...) -> timm's


def summary(name: str) -> str:
    f = FOUNDATION[name]
    size = f", {f.min_resolution} px only" if f.fixed_resolution else ""
    return f"{f.library} {f.model} image tower ({f.params_m:.1f}M parameters, {f.pretraining}{size}; foundation extra)"


def download_help(name: str) -> str:
    """Where the published weights come from, for the message shown when they cannot be downloaded."""
    f = FOUNDATION[name]
    if f.library == "open_clip":
        import open_clip

        hub = open_clip.get_pretrained_cfg(f.model, f.tag).get("hf_hub", "").rstrip("/")
    else:
        import timm

        hub = timm.models.get_pretrained_cfg(f"{f.model}.{f.tag}").hf_hub_id
    return f"the Hugging Face Hub repository {hub}"
