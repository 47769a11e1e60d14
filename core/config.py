"""The one training config: a frozen dataclass, its presets, validation, JSON round trip and hash.

Every setting of a run lives here, so that the CLI, the Train page, the run store and the app's
cache all speak about the same object. `validate` is the single place that says what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

METHODS = ("scratch", "transfer", "semi")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
FINETUNE = ("head", "last", "all")
SEMI_ALGOS = ("selftrain", "labelspread", "fixmatch")
PRECISIONS = ("auto", "fp32", "bf16")


class ConfigError(ValueError):
    """A config value is out of range or a combination makes no sense; the message names the field."""


@dataclass(frozen=True)
class TrainConfig:
    # --- what is trained
    method: str = "scratch"  # scratch | transfer | semi
    arch: str = "resnet18_cifar"
    weights: str = ""  # "" (random init), "imagenet" (torchvision download) or a .pth file path
    resolution: int = 32  # images are upsampled to this before the model (transfer)
    finetune: str = "all"  # head (frozen features) | last (last block + head) | all
    normalize: bool = False  # ImageNet mean/std normalisation of the inputs
    flip_features: bool = False  # frozen features: average each image's with its mirror image's
    # --- data
    n_labeled: int = 100
    augment: str = "none"  # a preset name or a pipeline such as "hflip|crop(padding=4)|mixup(alpha=0.4)"
    # --- optimisation
    epochs: int = 100
    batch_size: int = 10
    optimizer: str = "adam"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "step"  # constant | step (x gamma every step_every epochs) | cosine | onecycle
    step_every: int = 30
    step_gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    # --- semi-supervised (method == "semi")
    semi: str = "selftrain"  # selftrain (head rounds) | labelspread (kNN graph, then a head) | fixmatch
    n_unlabeled: int = 0  # 0 means all unlabeled images
    rounds: int = 5  # self-training rounds
    threshold: float = 0.95  # pseudo-label confidence threshold
    per_class: int = 0  # accept at most this many pseudo-labels per class (and round, for selftrain); 0: no cap
    knn: int = 10  # labelspread: neighbours per image in the graph
    mu: int = 7  # FixMatch: unlabeled images per labeled image in a batch
    lambda_u: float = 1.0  # FixMatch: weight of the unlabeled loss
    ema: float = 0.999  # FixMatch: EMA decay of the evaluated weights (0: off)
    # --- bookkeeping
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 where the hardware has it) | fp32 | bf16
    eval_every: int = 10  # epochs between test checks on a fixed subset (0: never)
    eval_subset: int = 1000  # size of that subset
    preset: str = field(default="", compare=False)  # the preset this was started from (label only)

    # ---- JSON round trip and hash
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        values = {}
        for name, value in data.items():
            values[name] = _coerce(name, value, known[name].type)
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))

    def config_hash(self) -> str:
        """Stable across processes and versions of Python: sha256 of the sorted JSON, the label left out."""
        data = self.to_dict()
        data.pop("preset")
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def with_(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)


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


# ---- presets: two per method, `notebook` (the practical session's recipe) and `recommended`

# A linear head on frozen MobileNetV2 features at 128 px: the base of the transfer and semi presets.
_FROZEN_128 = TrainConfig(
    method="transfer",
    arch="mobilenet_v2",
    weights="imagenet",
    resolution=128,
    finetune="head",
    normalize=True,
    flip_features=True,
    epochs=100,
    batch_size=100,
    optimizer="adamw",
    lr=1e-3,
    weight_decay=1e-2,
    schedule="cosine",
    eval_every=0,
)

PRESETS: dict[tuple[str, str], TrainConfig] = {
    # The notebook: ResNet-18 from scratch, ToTensor only, Adam lr 0.1, batch 10, x0.1 every 30 epochs.
    ("scratch", "notebook"): TrainConfig(),
    # Our scratch recipe: SGD + Nesterov, cosine with warm-up, label smoothing, flip + crop, MixUp-free
    # (on 100 images MixUp slowed convergence in our runs), small batch for many steps.
    ("scratch", "recommended"): TrainConfig(
        augment="flip_crop",
        epochs=120,
        batch_size=20,
        optimizer="sgd",
        lr=0.05,
        nesterov=True,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=5,
        label_smoothing=0.1,
        eval_every=20,
    ),
    # The notebook's transfer: ImageNet ResNet-18 fine-tuned at 32x32, Adam 1e-3. We default to the
    # MobileNetV2 checkpoint that exists offline.
    ("transfer", "notebook"): TrainConfig(method="transfer", arch="mobilenet_v2", weights="imagenet", lr=1e-3),
    # Frozen ImageNet features at 128 px, averaged with the mirror image's, and a linear head: with 100
    # labels, upsampling matters more than fine-tuning (fine-tuning all layers overfits and lands below
    # the frozen probe).
    ("transfer", "recommended"): _FROZEN_128,
    # The naive self-training loop: head, pseudo-label the 400 most confident per class, refit, 3 rounds.
    ("semi", "notebook"): _FROZEN_128.with_(
        method="semi", flip_features=False, n_unlabeled=5000, rounds=3, threshold=0.0, per_class=400
    ),
    # Label spreading over a 10-NN graph of the features of all 49,900 unlabeled images, then a linear
    # head on the labeled images plus the 2,000 most confident pseudo-labels of each class. Chosen on a
    # validation split of 2,000 unlabeled images (core.data.validation_splits), never on the test set.
    ("semi", "recommended"): _FROZEN_128.with_(
        method="semi", semi="labelspread", epochs=20, rounds=1, threshold=0.0, per_class=2000, knn=10
    ),
}


def list_presets(method: str | None = None) -> list[str]:
    return sorted({name for (m, name) in PRESETS if method is None or m == method})


def preset(method: str, name: str, **overrides: Any) -> TrainConfig:
    """The named preset of a method, with overrides applied, checked."""
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is unknown; choose one of {', '.join(METHODS)}")
    key = (method, name)
    if key not in PRESETS:
        raise ConfigError(
            f"preset={name!r} is unknown for method {method!r}; choose one of {', '.join(list_presets(method))}"
        )
    base = PRESETS[key]
    data = base.to_dict() | {k: v for k, v in overrides.items() if v is not None}
    data["preset"] = name
    return validate(TrainConfig.from_dict(data))


def _check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name}={value!r} is out of range; accepted: {bracket}{low}, {high}]")


def _check_choice(name: str, value: str, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is unknown; choose one of {', '.join(choices)}")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Raise ConfigError naming the field, its value and what is accepted; return cfg when it is sound."""
    # Imported here: augment and models import torch, and config must stay cheap to import.
    from core.augment import parse_pipeline
    from core.models import list_models

    _check_choice("method", cfg.method, METHODS)
    _check_choice("arch", cfg.arch, list_models())
    _check_choice("finetune", cfg.finetune, FINETUNE)
    _check_choice("optimizer", cfg.optimizer, OPTIMIZERS)
    _check_choice("schedule", cfg.schedule, SCHEDULES)
    _check_choice("semi", cfg.semi, SEMI_ALGOS)
    _check_choice("precision", cfg.precision, PRECISIONS)
    _check_range("epochs", cfg.epochs, 1, 10_000)
    _check_range("batch_size", cfg.batch_size, 1, 4096)
    _check_range("lr", cfg.lr, 0.0, 10.0, low_open=True)
    _check_range("momentum", cfg.momentum, 0.0, 0.999)
    _check_range("weight_decay", cfg.weight_decay, 0.0, 1.0)
    _check_range("step_every", cfg.step_every, 1, 10_000)
    _check_range("step_gamma", cfg.step_gamma, 0.0, 1.0, low_open=True)
    _check_range("warmup_epochs", cfg.warmup_epochs, 0, cfg.epochs - 1)
    _check_range("label_smoothing", cfg.label_smoothing, 0.0, 0.5)
    _check_range("resolution", cfg.resolution, 16, 512)
    _check_range("n_labeled", cfg.n_labeled, 10, 50_000)
    _check_range("n_unlabeled", cfg.n_unlabeled, 0, 1_000_000)
    _check_range("rounds", cfg.rounds, 1, 100)
    _check_range("threshold", cfg.threshold, 0.0, 1.0)
    _check_range("per_class", cfg.per_class, 0, 1_000_000)
    _check_range("knn", cfg.knn, 1, 200)
    _check_range("mu", cfg.mu, 1, 64)
    _check_range("lambda_u", cfg.lambda_u, 0.0, 100.0)
    _check_range("ema", cfg.ema, 0.0, 0.99999)
    _check_range("eval_every", cfg.eval_every, 0, 10_000)
    _check_range("eval_subset", cfg.eval_subset, 10, 1_000_000)
    _check_range("seed", cfg.seed, 0, 2**31 - 1)
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
        raise ConfigError(f"device={cfg.device!r} is unknown; choose auto, cpu, cuda or cuda:N")
    try:
        parse_pipeline(cfg.augment)
    except ValueError as err:
        raise ConfigError(f"augment={cfg.augment!r}: {err}") from None
    if cfg.weights not in ("", "imagenet") and not Path(cfg.weights).is_file():
        raise ConfigError(f"weights={cfg.weights!r}: no such file; give 'imagenet' or the path of a .pth state_dict")
    if cfg.method == "scratch" and cfg.weights:
        raise ConfigError(
            f"weights={cfg.weights!r} makes no sense with method=scratch; use method=transfer or clear weights"
        )
    if cfg.method in ("transfer", "semi") and cfg.semi != "fixmatch" and not cfg.weights:
        raise ConfigError(f"method={cfg.method} needs pretrained weights: set weights to 'imagenet' or a .pth file")
    if cfg.finetune != "all" and not cfg.weights:
        raise ConfigError(
            f"finetune={cfg.finetune!r} freezes a backbone that has no pretrained weights; "
            "set weights or use finetune=all"
        )
    if cfg.method == "semi" and cfg.semi != "fixmatch" and cfg.finetune != "head":
        raise ConfigError(f"semi={cfg.semi} works on frozen features: set finetune=head")
    if cfg.arch == "resnet18_cifar" and cfg.weights == "imagenet":
        raise ConfigError("arch=resnet18_cifar has no ImageNet weights; use resnet18 or mobilenet_v2, or a .pth file")
    return cfg
