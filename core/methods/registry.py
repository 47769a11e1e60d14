"""The method registry and everything that needs to know every method: `validate`, presets.

A new method is one file in core/methods/ and one line in BUILTIN below; `register` adds one from
anywhere else (a plug-in, a test). validate, the CLI's --method choices, the estimate and the Train
page all read this registry.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from core.config import FIELD_SPECS, ConfigError, TrainConfig, check_fields, is_used
from core.data.pipelines import parse_pipeline
from core.methods.base import Method
from core.methods.fixmatch import FixMatch
from core.methods.labelspread import LabelSpread
from core.methods.scratch import Scratch
from core.methods.selftrain import SelfTrain
from core.methods.spreadtune import SpreadTune
from core.methods.transfer import Transfer
from core.models import REGISTRY, list_models

BUILTIN: tuple[Method, ...] = (Scratch(), Transfer(), SelfTrain(), LabelSpread(), FixMatch(), SpreadTune())
METHODS: dict[str, Method] = {}
# Fields every method reads, whatever it declares.
ALWAYS = ("n_labeled", "seed", "device", "precision", "eval_subset", "cv_folds")


def register(method: Method) -> Method:
    if not method.name or not method.name.isidentifier():
        raise ValueError(f"a method needs an identifier as its name, not {method.name!r}")
    METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    METHODS.pop(name, None)


for _m in BUILTIN:
    register(_m)


def list_methods() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"method={name!r} is unknown; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def used_fields(method: str) -> tuple[str, ...]:
    return (*get_method(method).fields, *ALWAYS)


DEFAULTS = TrainConfig()
# Not part of what an experiment is: the method is its name, the preset a label, keep_weights a storage option.
NOT_RESET = ("method", "preset", "keep_weights")


def canonical(cfg: TrainConfig) -> TrainConfig:
    """The experiment cfg describes, in one spelling: every field the method does not read, or that has no
    effect here (its "used when" rule), takes its default, and the method's fixed values are set. So
    `--method scratch --knn 5` from the CLI is the same experiment, with the same hash, as scratch started
    on the Train page, which never shows knn."""
    method = get_method(cfg.method)
    read = set(used_fields(cfg.method)) | set(NOT_RESET)
    unread = {n: getattr(DEFAULTS, n) for n in FIELD_SPECS if n not in read}
    out = cfg.with_(**(unread | method.fixed))
    idle = {n: getattr(DEFAULTS, n) for n in FIELD_SPECS if n not in NOT_RESET and not is_used(n, out)}
    out = out.with_(**idle)
    return cfg if out == cfg else out


def experiment_hash(cfg: TrainConfig, fingerprint: str) -> str:
    """What identifies an experiment: the fields the method reads (canonical) and the dataset it ran on."""
    blob = f"{canonical(cfg).config_hash()}|{fingerprint}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def validate(cfg: TrainConfig) -> TrainConfig:
    """Raise ConfigError naming the field, its value and what is accepted; return cfg when it is sound, in its
    canonical spelling (the same experiment from the CLI or the app is the same config)."""
    method = get_method(cfg.method)
    check_fields(cfg)
    if cfg.arch not in list_models():
        raise ConfigError(
            f"arch={cfg.arch!r} is unknown; choose one of {', '.join(list_models()[:5])}, or any other "
            "torchvision classifier (torchvision.models.list_models(module=torchvision.models))"
        )
    method.check(cfg)
    try:
        parse_pipeline(cfg.augment)
    except ValueError as err:
        raise ConfigError(f"augment={cfg.augment!r}: {err}") from None
    if cfg.weights not in ("", "imagenet") and not Path(cfg.weights).is_file():
        raise ConfigError(f"weights={cfg.weights!r}: no such file; give 'imagenet' or the path of a .pth state_dict")
    if cfg.finetune != "all" and not cfg.weights:
        raise ConfigError(
            f"finetune={cfg.finetune!r} freezes a backbone that has no pretrained weights; "
            "set weights or use finetune=all"
        )
    entry = REGISTRY[cfg.arch]
    if cfg.weights == "imagenet" and entry.pretrained is None:
        raise ConfigError(
            f"arch={cfg.arch} has no ImageNet weights; pick a torchvision network (resnet18, convnext_tiny, ...) "
            "or give a .pth file"
        )
    if entry.fixed_resolution and cfg.resolution != entry.min_resolution:
        raise ConfigError(
            f"resolution={cfg.resolution}: arch={cfg.arch} runs at {entry.min_resolution} px only (its weights' "
            f"input size); set resolution={entry.min_resolution}"
        )
    if cfg.resolution < entry.min_resolution:
        raise ConfigError(
            f"resolution={cfg.resolution} is too small for arch={cfg.arch}: it needs at least "
            f"{entry.min_resolution} px; set resolution={entry.min_resolution} or more"
        )
    if cfg.whiten_stem and not is_used("whiten_stem", cfg):
        whitening = ", ".join(name for name, entry in REGISTRY.items() if entry.whitens)
        raise ConfigError(f"whiten_stem=True needs a 2x2 patch stem ({whitening}); arch={cfg.arch} has none: clear it")
    if cfg.whiten_stem and cfg.weights:
        raise ConfigError(
            "whiten_stem=True would overwrite the first layer of the pretrained weights: clear one of them"
        )
    return canonical(cfg)


def list_presets(method: str | None = None) -> list[str]:
    names = (m.presets for m in METHODS.values()) if method is None else [get_method(method).presets]
    return sorted({name for presets in names for name in presets})


def preset(method: str, name: str, **overrides: Any) -> TrainConfig:
    """The named preset of a method, with overrides applied (None means: keep the preset's value), checked."""
    presets = get_method(method).presets
    if name not in presets:
        raise ConfigError(f"preset={name!r} is unknown for method {method!r}; choose one of {', '.join(presets)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    data = TrainConfig().to_dict() | presets[name] | given | {"method": method, "preset": name}
    cfg = TrainConfig.from_dict(data)
    if "whiten_stem" not in given and not is_used("whiten_stem", cfg):
        cfg = cfg.with_(whiten_stem=False)  # the preset's whitened stem goes with its network, not with another one
    return validate(cfg)


# Fields that vary between runs of one recipe, or say where it ran: a run that changed them is still its preset.
PER_RUN = ("seed", "device", "precision", "eval_every", "eval_subset", "n_labeled", "preset")


def changed_from_preset(cfg: TrainConfig) -> list[str]:
    """The fields in which cfg's experiment is not its preset's (a 60-epoch run of a 30-epoch preset:
    ["epochs"]); [] when it is the preset, or names none."""
    try:
        named = canonical(preset(cfg.method, cfg.preset))
    except ConfigError:  # no preset, a custom one, or a method since unregistered
        return []
    ours = canonical(cfg)
    return [f for f in FIELD_SPECS if f not in PER_RUN and getattr(ours, f) != getattr(named, f)]


def default_preset(method: str) -> str:
    presets = list(get_method(method).presets)
    return "recommended" if "recommended" in presets else presets[0]
