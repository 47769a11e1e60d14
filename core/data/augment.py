"""Augmentation pipelines applied: as torchvision objects and as the code that builds them, as previews,
and to whole training batches.

Training applies a pipeline to whole batches: flips, padded crops and erasing run as batched tensor
operations on the training device; the policy transforms (AutoAugment, RandAugment, ...) run per
image on uint8 tensors; MixUp and CutMix act on (images, labels) batches.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchvision.transforms import v2

from core.data.pipelines import (
    CATALOG,
    Step,
    parse_pipeline,
)


def _v2_args(name: str, p: dict[str, Any], size: int, num_classes: int) -> dict[str, Any]:
    if name == "crop":
        return {"size": size, "padding": p["padding"]}
    if name == "affine":
        return {
            "degrees": p["degrees"],
            "translate": (p["translate"], p["translate"]),
            "scale": (1 - p["scale"], 1 + p["scale"]),
        }
    if name == "autoaugment":
        return {"policy": v2.AutoAugmentPolicy.CIFAR10}
    if name == "erasing":
        return {"p": p["p"], "scale": (0.02, p["max_area"]), "value": 0}
    if name in ("mixup", "cutmix"):
        return {"alpha": p["alpha"], "num_classes": num_classes}
    return dict(p)


def build_transform(
    steps: tuple[Step, ...], size: int = 32, num_classes: int = 10
) -> tuple[v2.Transform, v2.Transform | None]:
    """The per-image v2.Compose and the batch-level transform (MixUp/CutMix) or None."""
    per_image, batch = [], None
    for name, p in steps:
        cls = getattr(v2, CATALOG[name].code)
        t = cls(**_v2_args(name, p, size, num_classes))
        if CATALOG[name].batch_level:
            batch = t
        else:
            per_image.append(t)
    return (v2.Compose(per_image) if per_image else v2.Identity()), batch


def _code_arg(value: Any) -> str:
    if isinstance(value, v2.AutoAugmentPolicy):
        return "v2.AutoAugmentPolicy.CIFAR10"
    return repr(value)


def to_code(text: str, size: int = 32, num_classes: int = 10) -> str:
    """The torchvision code that builds this pipeline, ready to paste."""
    steps = parse_pipeline(text)
    lines = ["import torch", "from torchvision.transforms import v2", "", "transform = v2.Compose(["]
    # A PIL image (what torchvision.datasets.CIFAR10 yields) or a uint8 tensor -> an image tensor, first: without
    # it, the code returned PIL images that a DataLoader cannot batch.
    lines.append("    v2.ToImage(),")
    batch_line = None
    for name, p in steps:
        args = ", ".join(f"{k}={_code_arg(v)}" for k, v in _v2_args(name, p, size, num_classes).items())
        call = f"v2.{CATALOG[name].code}({args})"
        if CATALOG[name].batch_level:
            batch_line = f"batch_transform = {call}  # images, labels = batch_transform(images, labels)"
        else:
            lines.append(f"    {call},")
    lines.append("    v2.ToDtype(torch.float32, scale=True),")
    lines.append("])")
    if batch_line:
        lines.append(batch_line)
    return "\n".join(lines)


def preview(images: torch.Tensor, text: str, k: int, seed: int = 0) -> torch.Tensor:
    """K augmented versions of each image (uint8 N x 3 x H x W -> N x K x 3 x H x W); same seed, same output."""
    steps = parse_pipeline(text)
    per_image, batch = build_transform(steps, size=images.shape[-1])
    n = len(images)
    out = torch.empty(n, k, *images.shape[1:], dtype=torch.uint8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for j in range(k):
            views = torch.stack([per_image(img) for img in images])
            if batch is not None and n > 1:
                # Mix the shown images with each other, as a training batch would.
                labels = torch.arange(n) % 10
                mixed, _ = batch(views.float() / 255, labels)
                views = (mixed * 255).round().clamp(0, 255).to(torch.uint8)
            out[:, j] = views
    return out


def _batch_hflip(x: torch.Tensor, p: float) -> torch.Tensor:
    flip = torch.rand(len(x), device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _batch_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    if padding == 0:
        return x
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    oy = torch.randint(0, 2 * padding + 1, (b,), device=x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # B x H x 1
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # B x 1 x W
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # B x C x H x W


def _batch_erase(x: torch.Tensor, p: float, max_area: float) -> torch.Tensor:
    b, _, h, w = x.shape
    dev = x.device
    area = torch.empty(b, device=dev).uniform_(0.02, max_area) * h * w
    log_ratio = torch.empty(b, device=dev).uniform_(math.log(0.3), math.log(3.3))
    eh = (area * log_ratio.exp()).sqrt().clamp(1, h).long()
    ew = (area / log_ratio.exp()).sqrt().clamp(1, w).long()
    top = (torch.rand(b, device=dev) * (h - eh + 1)).long()
    left = (torch.rand(b, device=dev) * (w - ew + 1)).long()
    ys = torch.arange(h, device=dev)[None, :, None]
    xs = torch.arange(w, device=dev)[None, None, :]
    inside = (
        (ys >= top[:, None, None])
        & (ys < (top + eh)[:, None, None])
        & (xs >= left[:, None, None])
        & (xs < (left + ew)[:, None, None])
    )
    apply = (torch.rand(b, device=dev) < p)[:, None, None]
    return x.masked_fill((inside & apply)[:, None], 0)


class BatchAugment:
    """Applies a pipeline to a uint8 batch on its device and returns float images in [0, 1] and targets.

    Targets are class indices, or class probabilities after MixUp/CutMix.
    """

    def __init__(self, text: str, num_classes: int) -> None:
        self.steps = parse_pipeline(text)
        self.num_classes = num_classes
        _, self.batch_transform = build_transform(self.steps, num_classes=num_classes)
        self._per_image = {
            i: build_transform(((name, p),))[0]
            for i, (name, p) in enumerate(self.steps)
            if name not in ("hflip", "crop", "erasing") and not CATALOG[name].batch_level
        }

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for i, (name, p) in enumerate(self.steps):
            if name == "hflip":
                x = _batch_hflip(x, p["p"])
            elif name == "crop":
                x = _batch_crop(x, p["padding"])
            elif name == "erasing":
                x = _batch_erase(x, p["p"], p["max_area"])
            elif i in self._per_image:
                t = self._per_image[i]
                x = torch.stack([t(img) for img in x])
        images = x.float().div_(255)
        if self.batch_transform is not None and len(images) > 1:
            images, y = self.batch_transform(images, y)
        return images, y


MIN_TILE = 64  # pixels: smaller tiles cannot be read on a classroom projector


def preview_fits(k: int, pipelines: int, size: int = 32, max_width: int = 1100, gap: int = 8) -> bool:
    """Whether a row of the original and k samples of each pipeline fits max_width with tiles of MIN_TILE."""
    scale = -(-MIN_TILE // size)
    return ((1 + pipelines * k) * (size + 1) + pipelines * gap) * scale <= max_width


def preview_grid(
    images: torch.Tensor, pipelines: list[str], k: int, seed: int = 0, max_width: int = 1100, gap: int = 8
) -> torch.Tensor:
    """One picture for the page: per row, the original | k samples of each pipeline, enlarged by the
    largest whole factor that fits max_width but never to tiles under MIN_TILE pixels (preview_fits says
    whether they fit), with nearest-neighbour scaling so that 32x32 pixels stay crisp. Returns uint8 H x W x 3."""
    n, _, h, w = images.shape
    blocks = [images[:, None]] + [preview(images, text, k, seed) for text in pipelines]
    wide = torch.full((n, 3, h, gap), 255, dtype=torch.uint8)
    thin = torch.full((n, 3, h, 1), 255, dtype=torch.uint8)
    row_parts = []
    for b, block in enumerate(blocks):
        if b:
            row_parts.append(wide)
        for j in range(block.shape[1]):
            row_parts += [thin, block[:, j]] if j else [block[:, j]]
    rows = torch.cat(row_parts, dim=3)  # n x 3 x h x W
    spacer = torch.full((n, 3, 1, rows.shape[-1]), 255, dtype=torch.uint8)
    grid = torch.cat([rows, spacer], dim=2).permute(1, 0, 2, 3).reshape(3, -1, rows.shape[-1])
    scale = max(-(-MIN_TILE // h), max_width // grid.shape[-1])
    grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return grid.permute(1, 2, 0).contiguous()
