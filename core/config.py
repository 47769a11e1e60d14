"""The one training config: a frozen dataclass whose fields carry their own range, choices, help and
"used when" rule; its JSON round trip and hash.

Every setting of a run lives here, so that the CLI's flags, the Train page's widgets and `validate`
(in core.methods.registry, which also knows the methods) read the same bounds: the form can never offer a
value that validation refuses. The method names are not listed here: each method declares itself in
core.methods.registry, and a new method adds no line to this file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
FINETUNE = ("head", "last", "all")
CLASSIFIERS = ("trained", "centroids", "lda")
PRECISIONS = ("auto", "fp32", "bf16")
# Methods that were one `semi` method with a `semi` field before the method registry (schema 1).
LEGACY_SEMI = ("selftrain", "labelspread", "fixmatch")


class ConfigError(ValueError):
    """A config value is out of range or a combination makes no sense; the message names the field."""


@dataclass(frozen=True)
class FieldSpec:
    """What a config field accepts and means: read by validate, the CLI and the Train page."""

    label: str
    help: str = ""
    low: float | None = None  # inclusive bounds of a number
    high: float | None = None
    choices: tuple[str, ...] = ()
    step: float | None = None  # the Train page's +/- step for a number
    # Only where this holds does the field change anything (else the Train page hides it).
    used_when: Callable[[Any], bool] | None = None


def spec(default: Any, label: str, help: str = "", **kw: Any) -> Any:
    return dataclasses.field(default=default, metadata={"spec": FieldSpec(label, help, **kw)})


def _sgd(c: Any) -> bool:
    return c.optimizer == "sgd" and trains(c)


def _whitens(arch: str) -> bool:
    from core.models import REGISTRY  # here, so that reading a config does not import torch

    return arch in REGISTRY and REGISTRY[arch].whitens


def _step_schedule(c: Any) -> bool:
    return c.schedule == "step" and trains(c)


def trains(c: Any) -> bool:
    """Something learns with the optimiser: not a head of class centroids (plain or LDA), which is computed, not
    trained."""
    return not (c.finetune == "head" and c.classifier in ("centroids", "lda"))


@dataclass(frozen=True)
class TrainConfig:
    # --- what is trained
    method: str = spec(
        "scratch", "Method", "scratch | transfer | selftrain | labelspread | fixmatch (see core.methods.registry)"
    )
    arch: str = spec("resnet18_cifar", "Architecture", "A registered model (core.models).")
    weights: str = spec("", "Pretrained weights", '"" (random init), "imagenet" (torchvision download) or a .pth path')
    resolution: int = spec(
        32, "Resolution (px)", "ImageNet features were learned on 224 px photos. At 32 px a pretrained network sees "
        "blurry thumbnails and its features are weak; upsampling to 96-128 px recovers much of their power.",
        low=16, high=576, step=16,  # 518: ViT-H/14's only input size
    )  # fmt: skip
    finetune: str = spec(
        "all", "What trains", "head: the backbone is frozen and its features are computed once, so only a linear "
        "layer learns (seconds). last: the last block adapts too. all: every weight moves, which with 100 labels "
        "easily overfits and forgets ImageNet.", choices=FINETUNE,
    )  # fmt: skip
    classifier: str = spec(
        "trained", "Classifier", "On frozen features. trained: a linear layer learns from the labeled images with "
        "the optimiser below. centroids: each class is the mean of its labeled images' features (their signed "
        "square roots, so that a few large activations do not outweigh the many small ones), and an image "
        "goes to the class whose mean points most nearly its way (cosine similarity). Nothing is trained, so "
        "nothing overfits: with 10 images a class it beat the trained layer on the validation split. lda: the "
        "centroids again, but the direction of each class's mean is corrected for the way images of one class "
        "vary together (linear discriminant analysis, its covariance shrunk a long way towards a sphere because "
        "100 images cannot measure it): 2-3 points above the plain centroids on the validation split.",
        choices=CLASSIFIERS, used_when=lambda c: c.finetune == "head",
    )  # fmt: skip
    normalize: bool = spec(False, "ImageNet normalisation", "Subtract ImageNet's mean, divide by its std: what "
                           "pretrained weights expect.")  # fmt: skip
    whiten_stem: bool = spec(
        False, "Whitened stem", "The first layer is not learned: its filters are computed from the labeled images "
        "so that they decorrelate neighbouring pixels and colours, and stay frozen (airbench's trick). Only for "
        "networks with a 2x2 patch stem (convnet_cifar), from random weights.", used_when=lambda c: _whitens(c.arch),
    )  # fmt: skip
    flip_test: bool = spec(
        False, "Test-time mirroring", "At evaluation the network predicts each image and its mirror "
        "image and averages the two: twice the evaluation time, a little steadier (+0.25 points for the scratch "
        "preset on the validation split). Frozen features have Flip-averaged features instead.",
        used_when=lambda c: c.finetune != "head",
    )  # fmt: skip
    flip_features: bool = spec(
        False, "Flip-averaged features", "Frozen features only: average each image's features with its mirror "
        "image's. Twice the feature time, steadier features (+2 to 3 points for label spreading on validation).",
        used_when=lambda c: c.finetune == "head",
    )  # fmt: skip
    # --- data
    n_labeled: int = spec(100, "Labeled images", "The first N labeled images are used.", low=2, high=50_000)
    augment: str = spec("none", "Augmentation", "A preset name or a pipeline such as hflip|crop(padding=4); "
                        "preview them on the Data page.")  # fmt: skip
    cv_folds: int = spec(
        5, "Cross-validation folds", "Only for a dataset without a test set: the labeled images are split into "
        "this many folds (each class spread evenly), the method trains on all but one and is scored on the one left "
        "out, in turn; the run reports the folds' mean and spread.", low=2, high=20,
    )  # fmt: skip
    # --- optimisation
    epochs: int = spec(100, "Epochs", "With 100 images an epoch is a handful of steps: think in steps, not epochs.",
                       low=1, high=10_000, used_when=trains)  # fmt: skip
    batch_size: int = spec(10, "Batch size", "", low=1, high=4096, used_when=trains)
    optimizer: str = spec("adam", "Optimizer", "", choices=OPTIMIZERS, used_when=trains)
    lr: float = spec(
        0.1, "Learning rate", "Adam at lr 0.1 (the notebook's choice) takes huge steps: the loss jumps around and "
        "BatchNorm statistics go wild. Adam works near 1e-3; SGD with momentum near 0.01-0.1.",
        low=1e-6, high=10.0, step=1e-3, used_when=trains,
    )  # fmt: skip
    momentum: float = spec(0.9, "Momentum (SGD)", "", low=0.0, high=0.999, step=0.01, used_when=_sgd)
    nesterov: bool = spec(False, "Nesterov", "Look-ahead momentum; usually a little better.", used_when=_sgd)
    weight_decay: float = spec(0.0, "Weight decay", "Pulls weights towards zero; a mild regulariser.",
                               low=0.0, high=1.0, step=1e-4, used_when=trains)  # fmt: skip
    schedule: str = spec("step", "Schedule", "How the learning rate changes over the run.", choices=SCHEDULES,
                         used_when=trains)  # fmt: skip
    step_every: int = spec(30, "Step schedule: every N epochs", "", low=1, high=10_000, used_when=_step_schedule)
    step_gamma: float = spec(0.1, "Step schedule: factor", "", low=0.001, high=1.0, step=0.05,
                             used_when=_step_schedule)  # fmt: skip
    warmup_epochs: int = spec(0, "Warm-up epochs", "The learning rate ramps up linearly over these epochs.",
                              low=0, high=9_999, used_when=trains)  # fmt: skip
    label_smoothing: float = spec(
        0.0, "Label smoothing", "Targets of 0.9/0.05 instead of 1/0: the network is not pushed to infinite "
        "confidence on 100 images.", low=0.0, high=0.5, step=0.05, used_when=trains,
    )  # fmt: skip
    # --- semi-supervised
    n_unlabeled: int = spec(0, "Unlabeled images (0 = all)", "", low=0, high=1_000_000)
    rounds: int = spec(5, "Rounds", "Self-training rounds: fit, pseudo-label, refit.", low=1, high=100)
    threshold: float = spec(0.95, "Confidence threshold", "Only unlabeled images predicted with at least this "
                            "confidence get a pseudo-label.", low=0.0, high=1.0, step=0.05)  # fmt: skip
    per_class: int = spec(0, "Pseudo-labels per class", "At most this many pseudo-labels per class (and round, "
                          "for self-training), so that easy classes do not swamp the others; 0: no cap.",
                          low=0, high=1_000_000)  # fmt: skip
    spread_rounds: int = spec(1, "Teacher rounds", "spreadtune: after each student, the labels spread again "
                              "over the student's own features, and the next student learns those.", low=1,
                              high=5)  # fmt: skip
    knn: int = spec(10, "Neighbours (k)", "Each image is linked to its k most similar images; labels spread "
                    "along those links.", low=1, high=200)  # fmt: skip
    mu: int = spec(7, "Unlabeled per labeled (mu)", "Unlabeled images per labeled image in a batch.", low=1, high=64)
    lambda_u: float = spec(1.0, "Unlabeled loss weight", "", low=0.0, high=100.0, step=0.1)
    ema: float = spec(0.999, "EMA decay", "Decay of the evaluated weights' moving average (0: off).",
                      low=0.0, high=0.99999, step=0.001)  # fmt: skip
    # --- bookkeeping
    seed: int = spec(0, "Seed", "Initialisation and data order; the labeled images stay the first N.",
                     low=0, high=2**31 - 1)  # fmt: skip
    device: str = spec("auto", "Device", "auto | cpu | cuda | cuda:N")
    precision: str = spec("auto", "Precision", "auto: bf16 where the hardware has it.", choices=PRECISIONS)
    eval_every: int = spec(10, "Test check every N epochs (0: off)", "A fixed subset of the test set, for the "
                           "learning curve.", low=0, high=10_000)  # fmt: skip
    eval_subset: int = spec(1000, "Test check size", "", low=10, high=1_000_000)
    keep_weights: bool = spec(
        False, "Keep the network's weights", "Save the trained network beside the run, so that Try a model can "
        "use it (its size is shown below). A head on frozen features is always kept: it takes kilobytes.",
        used_when=lambda c: c.finetune != "head",
    )  # fmt: skip
    preset: str = dataclasses.field(default="", compare=False)  # the preset this was started from (label only)

    # ---- JSON round trip and hash
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = migrate(dict(data))
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**{name: _coerce(name, value, known[name].type) for name, value in data.items()})

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))

    def config_hash(self) -> str:
        """Stable across processes and versions of Python: sha256 of the sorted JSON, the label and the
        storage option left out (neither changes the result)."""
        data = self.to_dict()
        data.pop("preset")
        data.pop("keep_weights")
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def with_(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Configs saved before the method registry had method="semi" and a `semi` field naming the algorithm."""
    algo = data.pop("semi", None)
    if data.get("method") == "semi":
        data["method"] = algo if algo in LEGACY_SEMI else "selftrain"
    return data


FIELD_SPECS: dict[str, FieldSpec] = {f.name: f.metadata["spec"] for f in fields(TrainConfig) if "spec" in f.metadata}
FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(TrainConfig)}


def _coerce(name: str, value: Any, type_name: Any) -> Any:
    kind = str(type_name)
    try:
        if kind == "bool":
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a valid {kind}") from None


def check_field(name: str, value: Any) -> None:
    """The field's own range or choices; raises ConfigError naming field, value and what is accepted."""
    s = FIELD_SPECS[name]
    if s.choices and value not in s.choices:
        raise ConfigError(f"{name}={value!r} is unknown; choose one of {', '.join(s.choices)}")
    if s.low is not None and not (s.low <= value <= s.high):
        raise ConfigError(f"{name}={value!r} is out of range; accepted: [{s.low:g}, {s.high:g}]")


def check_fields(cfg: TrainConfig) -> None:
    for name in FIELD_SPECS:
        check_field(name, getattr(cfg, name))
    if cfg.warmup_epochs >= cfg.epochs:
        raise ConfigError(f"warmup_epochs={cfg.warmup_epochs} must be below epochs={cfg.epochs}")
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
        raise ConfigError(f"device={cfg.device!r} is unknown; choose auto, cpu, cuda or cuda:N")


def is_used(name: str, cfg: TrainConfig) -> bool:
    rule = FIELD_SPECS[name].used_when
    return rule is None or bool(rule(cfg))


def is_on(name: str, cfg: TrainConfig) -> bool:
    """A yes/no field that is set and applies to this config (flip_test=True on a frozen head does not)."""
    return bool(getattr(cfg, name)) and is_used(name, cfg)


def cv_fold_count(cfg: TrainConfig, n_labeled: int) -> int:
    """The folds a cross-validation of n_labeled images makes: cfg.cv_folds, at most one per image, at least 2."""
    return max(2, min(cfg.cv_folds, n_labeled))


# Command-line spellings that differ from the field names (core.cli builds its flags from them, and
# core.__main__ reads them back before the CLI is imported).
CLI_ALIASES = {"n_unlabeled": "unlabeled"}
