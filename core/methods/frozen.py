"""The frozen-feature path: a pretrained backbone's features computed once and cached on disk, and a
linear head on standardised features that trains in seconds.

A linear probe or a self-training round then takes seconds: the expensive forward passes through
an ImageNet backbone happen once per (backbone, weights, resolution, images).

Used by the transfer method with finetune="head" and by self-training and label spreading.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from core.config import TrainConfig
from core.data.augment import BatchAugment
from core.data.pipelines import format_pipeline, parse_pipeline
from core.data.splits import Splits, save_cache
from core.engine.device import autocast
from core.engine.fusion import for_inference
from core.engine.loop import LoopResult, RowFn, supervised_step, train_loop
from core.engine.predict import StopFn
from core.models import SmallDataNet, weights_id

ProgressFn = Callable[[float, str], None]


@torch.no_grad()
def extract(
    model: SmallDataNet,
    images: torch.Tensor,
    *,
    device: torch.device,
    bf16: bool,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    what: str = "images",
    flip: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Pooled backbone features of uint8 images (N x 3 x H x W -> N x D, float32, on the CPU).

    flip: average each image's features with its mirror image's (a cheap, steadier feature).
    should_stop: asked before each batch; a yes raises InterruptedError (Stop must not wait for 49,900 images).
    """
    # Measured on the 2-core CPU, mobilenet_v2 at 128 px with bf16: batch 256 gives 145 images/s,
    # batch 64 gives 281, and channels_last 467.
    batch_size = batch_size or (64 if device.type == "cpu" else 512)
    model.to(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    # BatchNorm folded into the convolutions: 1.5-1.7x faster (core.engine.fusion); estimates count the folding
    net = for_inference(model) if len(images) else model
    out = []
    for start in range(0, len(images), batch_size):
        if should_stop and should_stop():
            model.train(was_training)
            raise InterruptedError(f"stopped during feature extraction of {what}")
        batch = images[start : start + batch_size].to(device, non_blocking=True).float().div_(255)
        with autocast(device, bf16):
            f = net.features(batch).float()
            if flip:
                f = (f + net.features(batch.flip(-1)).float()) / 2
        out.append(f.cpu())
        if progress:
            done = min(len(images), start + batch_size)
            progress(done / len(images), f"Features of {what}: {done:,} / {len(images):,}")
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, model.feature_dim)


def cache_key(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24]


def feature_path(cache_dir: Path | None, key: str) -> Path | None:
    return Path(cache_dir) / "features" / f"{key}.pt" if cache_dir else None


def cached_features(
    cache_dir: Path | None,
    key: str,
    compute: Callable[[], torch.Tensor],
) -> tuple[torch.Tensor, bool]:
    """Features from `cache_dir/features/<key>.pt`, or computed and saved there; (features, was_cached)."""
    path = feature_path(cache_dir, key)
    if path is not None and path.exists():
        try:
            return torch.load(path, weights_only=True), True
        except Exception:  # a truncated cache file is recomputed, never trusted
            pass
    feats = compute()
    if path is not None:
        save_cache(path, feats)
    return feats, False


AUGMENTED_VIEWS = 10  # head-only training: precomputed augmented views per labeled image
FeatureFn = Callable[..., torch.Tensor]


def signed_power(f: torch.Tensor, power: float) -> torch.Tensor:
    """Each feature's size raised to `power`, its sign kept: at 0.5, the few large activations no longer
    outweigh the many small ones when features are compared by angle (the power transform of PT-MAP)."""
    # In place on one copy, and zeros (a sixth of MobileNetV2's features) lifted to 1e-30 first: this CPU's square
    # root of an exact zero is slow, and sign() * abs().pow() took 3x as long on 10,000 test images' features.
    return f if power == 1.0 else f.abs().clamp_(min=1e-30).pow_(power).copysign_(f)


class StandardizedHead(nn.Module):
    """A linear head on features standardised with fixed statistics: standardised features let a
    linear layer train fast at one learning rate whatever the backbone. `power` (1: none) transforms
    the features first (signed_power); it is kept with the head's other statistics."""

    def __init__(self, head: nn.Linear, mean: torch.Tensor, std: torch.Tensor, power: float = 1.0) -> None:
        super().__init__()
        self.head = head
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.register_buffer("power", torch.tensor(float(power)))  # saved with the head
        self._power = float(power)  # what forward reads: float() of a GPU buffer would wait for the GPU every step

    @classmethod
    def fitted_to(cls, head: nn.Linear, features: torch.Tensor) -> StandardizedHead:
        return cls(head, features.mean(0), features.std(0) + 1e-6)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.head((signed_power(f, self._power) - self.mean) / self.std)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # A head kept before the power transform existed has none: it read its features as they came.
        state_dict.setdefault(prefix + "power", torch.tensor(1.0))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._power = float(state_dict[prefix + "power"])


def feature_cache(
    cfg: TrainConfig,
    splits: Splits,
    model: SmallDataNet,
    device: torch.device,
    bf16: bool,
    cache_dir: Path | None,
    progress: ProgressFn | None,
    should_stop: StopFn | None = None,
) -> FeatureFn:
    """features(images, what, *key): the frozen backbone's features of images, cached on disk under
    the backbone, weights, resolution, normalisation, flip averaging, dataset and `key`. The unlabeled pool
    is keyed by its own fingerprint (a cross-validation fold shares its dataset's pool); inside
    `shared_features`, the labeled and test images are looked up by content instead."""

    def features(images: torch.Tensor, what: str, *key: object) -> torch.Tensor:
        def compute(chosen: torch.Tensor = images) -> torch.Tensor:
            return extract(
                model, chosen, device=device, bf16=bf16, progress=progress, what=what, flip=cfg.flip_features,
                should_stop=should_stop,
            )  # fmt: skip

        pool = bool(key) and key[0] == "unlabeled"
        if _MEMO is not None and not pool:
            return _memoized(images, compute, (feature_key(cfg, "by content"), cfg.seed))
        fingerprint = splits.unlabeled_fingerprint if pool else splits.fingerprint
        return cached_features(cache_dir, feature_key(cfg, fingerprint, *key), compute)[0]

    return features


# Image digest -> feature row, while `shared_features` is on: the folds of a cross-validation pass each labeled
# image through the backbone once, not once per fold (core.runs.crossval).
_MEMO: dict[tuple, torch.Tensor] | None = None


@contextmanager
def shared_features() -> Iterator[None]:
    global _MEMO
    _MEMO = {}
    try:
        yield
    finally:
        _MEMO = None


def _memoized(images: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor], base: tuple) -> torch.Tensor:
    if not len(images):
        return compute(images)  # an empty N x D, D the backbone's
    keys = [(*base, hashlib.sha1(img.numpy().tobytes()).digest()) for img in images.contiguous()]
    missing = [i for i, k in enumerate(keys) if k not in _MEMO]
    if missing:
        for i, row in zip(missing, compute(images[missing]), strict=True):
            _MEMO[keys[i]] = row
    return torch.stack([_MEMO[k] for k in keys])


def feature_key(cfg: TrainConfig, fingerprint: str, *key: object) -> str:
    base = (cfg.arch, weights_id(cfg.weights), cfg.resolution, cfg.normalize, fingerprint, cfg.flip_features)
    return cache_key(*base, *key)


def labeled_key(cfg: TrainConfig, n_labeled: int) -> tuple[object, ...]:
    """The cache key of the labeled images' features: augmented views differ by seed and pipeline, the plain
    images' features are one file for every seed (a second seed of a frozen-feature recipe extracts nothing)."""
    if augmented_steps(cfg):
        return ("labeled", cfg.augment, cfg.seed, n_labeled * AUGMENTED_VIEWS)
    return ("labeled", n_labeled)


def augmented_steps(cfg: TrainConfig) -> list:
    """The image transforms of cfg.augment (MixUp and CutMix mix batches: they have no per-image view)."""
    return [s for s in parse_pipeline(cfg.augment) if s[0] not in ("mixup", "cutmix")]


def labeled_and_test_features(
    cfg: TrainConfig, splits: Splits, features: FeatureFn
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features of the labeled views (view-major), their labels, and the test set's features."""
    views = labeled_views(cfg, splits)
    lab_f = features(views, "labeled images", *labeled_key(cfg, len(splits.labeled_y)))
    test_f = features(splits.test_x, "test images", "test")
    return lab_f, splits.labeled_y.repeat(len(views) // len(splits.labeled_y)), test_f


def labeled_views(cfg: TrainConfig, splits: Splits) -> torch.Tensor:
    """The labeled images, then (with an augmentation) AUGMENTED_VIEWS - 1 augmented copies, view-major."""
    x = splits.labeled_x
    steps = augmented_steps(cfg)
    if not steps:
        return x
    augment = BatchAugment(format_pipeline(steps), len(splits.classes))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        copies = [augment(x, splits.labeled_y)[0].mul(255).round().to(torch.uint8) for _ in range(AUGMENTED_VIEWS - 1)]
    return torch.cat([x, *copies])


def train_head(
    head: StandardizedHead,
    features: torch.Tensor,
    labels: torch.Tensor,
    cfg: TrainConfig,
    device: torch.device,
    *,
    check: Callable[[], float] | None = None,
    on_row: RowFn | None = None,
    should_stop: StopFn | None = None,
) -> LoopResult:
    """Trains the head on (features, labels) with the engine's loop, in float32 (it is tiny)."""
    head.to(device)
    step = supervised_step(head, features, labels, cfg, device, False, lambda x, y: (x.float(), y))
    params = [p for p in head.parameters() if p.requires_grad]
    return train_loop(
        params, len(labels), cfg, step, device=device, set_train_mode=head.train, check=check,
        on_row=on_row, should_stop=should_stop,
    )  # fmt: skip
