"""Augmentation pipelines as data: a catalog of torchvision.transforms.v2 steps, named presets, custom pipelines.

A pipeline is an ordered tuple of steps (name, params). It has a compact text form used in configs
and on the command line, "hflip|crop(padding=4)|randaugment(num_ops=2, magnitude=9)", a JSON form
(a list of {"name", "params"}), and renders as the torchvision code that builds it.

What a pipeline does to images (torchvision objects, code, previews, batched training) is core.data.augment.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any


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
