"""Augmentations: a catalog of torchvision.transforms.v2 steps, named presets, custom pipelines.

A pipeline is an ordered tuple of steps (name, params). It has a compact text form used in configs
and on the command line, "hflip|crop(padding=4)|randaugment(num_ops=2, magnitude=9)", a JSON form
(a list of {"name", "params"}), and renders as the torchvision code that builds it.

Training applies a pipeline to whole batches: flips, padded crops and erasing run as batched tensor
operations on the training device; the policy transforms (AutoAugment, RandAugment, ...) run per
image on uint8 tensors; MixUp and CutMix act on (images, labels) batches.
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torchvision.transforms import v2


@dataclass(frozen=True)
class Param:
    default: Any
    low: float | None = None
    high: float | None = None
    help: str = ""


@dataclass(frozen=True)
class TransformSpec:
    label: str
    code: str  # the v2 class it builds
    params: dict[str, Param] = field(default_factory=dict)
    batch_level: bool = False  # acts on (images, labels) batches: MixUp, CutMix
    note: str = ""  # a teaching note shown beside the controls


def _p(default: Any, low: float | None = None, high: float | None = None, help: str = "") -> Param:
    return Param(default, low, high, help)


CATALOG: dict[str, TransformSpec] = {
    "hflip": TransformSpec(
        "Horizontal flip",
        "RandomHorizontalFlip",
        {"p": _p(0.5, 0.0, 1.0, "probability of mirroring")},
        note="Left-right mirroring keeps every CIFAR class a valid image of its class: a free 2x.",
    ),
    "crop": TransformSpec(
        "Random crop with padding",
        "RandomCrop",
        {"padding": _p(4, 0, 16, "pixels of zero padding on each side before cropping back")},
        note="Shifts the image by up to `padding` pixels. 4 of 32 is mild; 16 crops away half the object.",
    ),
    "rotate": TransformSpec(
        "Rotation",
        "RandomRotation",
        {"degrees": _p(10.0, 0.0, 180.0, "maximum angle either way")},
        note="Small angles help; at 32x32 large ones blur details and fill corners with black.",
    ),
    "affine": TransformSpec(
        "Affine (rotate, shift, scale)",
        "RandomAffine",
        {
            "degrees": _p(10.0, 0.0, 180.0, "maximum rotation"),
            "translate": _p(0.1, 0.0, 0.5, "maximum shift as a fraction of the size"),
            "scale": _p(0.1, 0.0, 0.5, "maximum zoom in or out, as a fraction"),
        },
        note="Combines rotation, shift and zoom; keep each small on tiny images.",
    ),
    "color_jitter": TransformSpec(
        "Color jitter",
        "ColorJitter",
        {
            "brightness": _p(0.3, 0.0, 1.0),
            "contrast": _p(0.3, 0.0, 1.0),
            "saturation": _p(0.3, 0.0, 1.0),
            "hue": _p(0.05, 0.0, 0.5),
        },
        note="Teaches invariance to lighting. Too much hue turns frogs blue and trucks green.",
    ),
    "grayscale": TransformSpec("Random grayscale", "RandomGrayscale", {"p": _p(0.1, 0.0, 1.0, "probability")}),
    "autoaugment": TransformSpec(
        "AutoAugment (CIFAR10 policy)",
        "AutoAugment",
        {},
        note="A policy searched on the full CIFAR-10: 25 pairs of operations with learned strengths.",
    ),
    "randaugment": TransformSpec(
        "RandAugment",
        "RandAugment",
        {
            "num_ops": _p(2, 1, 6, "operations applied to each image"),
            "magnitude": _p(9, 0, 30, "strength of every operation (0-30)"),
        },
        note="Two numbers instead of a searched policy: N random operations at strength M.",
    ),
    "trivialaugment": TransformSpec(
        "TrivialAugmentWide",
        "TrivialAugmentWide",
        {},
        note="One random operation at a random strength per image: no knobs, often as good as any.",
    ),
    "erasing": TransformSpec(
        "Random erasing (Cutout)",
        "RandomErasing",
        {
            "p": _p(0.5, 0.0, 1.0, "probability of erasing a patch"),
            "max_area": _p(0.25, 0.02, 0.5, "largest patch as a fraction of the image"),
        },
        note="Blanks a patch so that the model cannot rely on one small part of the object.",
    ),
    "mixup": TransformSpec(
        "MixUp (batch)",
        "MixUp",
        {"alpha": _p(0.4, 0.05, 2.0, "Beta(alpha, alpha) mixing weights")},
        batch_level=True,
        note="Blends pairs of images and their labels; a strong regulariser when data is scarce.",
    ),
    "cutmix": TransformSpec(
        "CutMix (batch)",
        "CutMix",
        {"alpha": _p(1.0, 0.05, 2.0, "Beta(alpha, alpha) patch areas")},
        batch_level=True,
        note="Pastes a patch of one image into another; labels mix by area.",
    ),
}

# Preset names say what they stack, so that none of them shadows a single transform's name.
PRESETS: dict[str, str] = {
    "none": "",
    "hflip": "hflip",
    "flip_crop": "hflip|crop(padding=4)",  # the notebook's augmentation
    "flip_crop_affine": "hflip|crop(padding=4)|affine(degrees=10, translate=0.0, scale=0.1)",
    "flip_crop_jitter": "hflip|crop(padding=4)|color_jitter",
    "flip_crop_autoaugment": "hflip|crop(padding=4)|autoaugment",
    "flip_crop_randaugment": "hflip|crop(padding=4)|randaugment(num_ops=2, magnitude=9)",
    "flip_crop_trivialaugment": "hflip|crop(padding=4)|trivialaugment",
    "flip_crop_cutout": "hflip|crop(padding=4)|erasing(p=1.0, max_area=0.25)",
    "flip_crop_mixup": "hflip|crop(padding=4)|mixup(alpha=0.4)",
    "flip_crop_cutmix": "hflip|crop(padding=4)|cutmix(alpha=1.0)",
}

Step = tuple[str, dict[str, Any]]


def list_presets() -> list[str]:
    return list(PRESETS)


# ---- parsing, printing and JSON


def _parse_step(text: str) -> Step:
    text = text.strip()
    name, _, rest = text.partition("(")
    name = name.strip()
    if name not in CATALOG:
        raise ValueError(f"unknown transform {name!r}; choose from {', '.join(CATALOG)}")
    params: dict[str, Any] = {}
    if rest:
        if not rest.endswith(")"):
            raise ValueError(f"missing ')' in {text!r}")
        try:
            call = ast.parse(f"f({rest}", mode="eval").body
        except SyntaxError:
            raise ValueError(f"cannot read the parameters of {text!r}; write name(key=value, ...)") from None
        if not isinstance(call, ast.Call) or call.args:
            raise ValueError(f"write parameters as key=value in {text!r}")
        for kw in call.keywords:
            try:
                params[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                raise ValueError(f"{name}: {kw.arg} must be a number or true/false") from None
    return name, _checked_params(name, params)


def _checked_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    spec = CATALOG[name]
    for key, value in params.items():
        if key not in spec.params:
            accepted = ", ".join(spec.params) or "none"
            raise ValueError(f"{name} has no parameter {key!r} (accepted: {accepted})")
        p = spec.params[key]
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{name}: {key}={value!r} must be a number")
        if (p.low is not None and value < p.low) or (p.high is not None and value > p.high):
            raise ValueError(f"{name}: {key}={value!r} is out of range [{p.low}, {p.high}]")
    full = {k: p.default for k, p in spec.params.items()} | params
    return {k: (int(v) if isinstance(spec.params[k].default, int) else float(v)) for k, v in full.items()}


def parse_pipeline(text: str) -> tuple[Step, ...]:
    """A preset name or a pipeline text ("hflip|crop(padding=4)") as steps with every parameter filled."""
    text = PRESETS.get(text.strip(), text).strip()
    if not text:
        return ()
    depth, parts, current = 0, [], ""
    for ch in text:  # split on '|' outside parentheses
        depth += (ch == "(") - (ch == ")")
        if ch == "|" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    steps = tuple(_parse_step(p) for p in parts if p.strip())
    batch_steps = [i for i, (name, _) in enumerate(steps) if CATALOG[name].batch_level]
    if batch_steps and (len(batch_steps) > 1 or batch_steps[0] != len(steps) - 1):
        raise ValueError("mixup or cutmix may appear once, as the last step")
    return steps


def format_pipeline(steps: tuple[Step, ...] | list[Step]) -> str:
    def fmt(name: str, params: dict[str, Any]) -> str:
        if not params:
            return name
        return f"{name}({', '.join(f'{k}={v!r}' for k, v in params.items())})"

    return "|".join(fmt(name, params) for name, params in steps)


def pipeline_to_json(steps: tuple[Step, ...]) -> str:
    return json.dumps([{"name": n, "params": p} for n, p in steps])


def pipeline_from_json(text: str) -> tuple[Step, ...]:
    try:
        items = json.loads(text)
        if not isinstance(items, list):
            raise ValueError("expected a list")
        steps = tuple((str(item["name"]), dict(item.get("params", {}))) for item in items)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"not a pipeline JSON list of {{name, params}}: {err}") from None
    return parse_pipeline(format_pipeline(steps))


def describe(text: str) -> str:
    """A pipeline's canonical name: the preset name if it is one, else its text."""
    return text if text in PRESETS else format_pipeline(parse_pipeline(text))


# ---- torchvision objects and code


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


# ---- preview


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


# ---- batched augmentation for training


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


def preview_grid(
    images: torch.Tensor, pipelines: list[str], k: int, seed: int = 0, max_width: int = 1100, gap: int = 8
) -> torch.Tensor:
    """One picture for the page: per row, the original | k samples of each pipeline, enlarged by the
    largest whole factor that fits max_width, with nearest-neighbour scaling so that 32x32 pixels stay
    crisp. Returns uint8 H x W x 3."""
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
    scale = max(1, max_width // grid.shape[-1])
    grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return grid.permute(1, 2, 0).contiguous()
