"""How long will a run take on this device? Measured, not guessed: a few timed steps, extrapolated
by the method's own `estimate`; features already in the cache cost nothing."""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from core.config import TrainConfig
from core.data import Splits
from core.device import autocast, resolve_device, use_bf16
from core.features import feature_path
from core.frozen import feature_key, labeled_key
from core.method import DataSizes
from core.models import create_model
from core.pseudo import unlabeled_key, unlabeled_subset
from core.registry import get_method

PROBE = 16  # images per timed step: time grows about linearly with the batch on a CPU, so 16 tell enough


@lru_cache(maxsize=64)
def _step_seconds(arch: str, resolution: int, batch: int, device: str, bf16: bool, train: bool) -> float:
    """Seconds for one training step (or one inference batch) of `batch` 32x32 images."""
    if batch > PROBE and device == "cpu":
        return _step_seconds(arch, resolution, PROBE, device, bf16, train) * batch / PROBE
    dev = torch.device(device)
    model = create_model(arch, 10, "", resolution, False).to(dev)
    if dev.type == "cuda" or bf16:  # as fit runs it
        model.to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        if train:
            model.train()
            with autocast(dev, bf16):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            model.eval()
            with torch.no_grad(), autocast(dev, bf16):
                model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: the first calls pay for kernel selection and memory
    step()
    times = []
    for _ in range(3):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return sorted(times)[1]  # the median: one slow step (another process, the GC) does not count


class MeasuredTiming:
    """core.method.Timing on this device, with the feature cache of `splits` in `cache_dir`."""

    def __init__(self, cfg: TrainConfig, splits: Splits | None = None, cache_dir: Path | None = None) -> None:
        self.device = resolve_device(cfg.device)
        self.bf16 = use_bf16(self.device, cfg.precision)
        self.splits = splits
        self.cache_dir = cache_dir

    def train_step(self, arch: str, resolution: int, batch: int) -> float:
        return _step_seconds(arch, resolution, batch, str(self.device), self.bf16, True)

    def per_image(self, arch: str, resolution: int) -> float:
        batch = 64 if self.device.type == "cpu" else 1024
        return _step_seconds(arch, resolution, batch, str(self.device), self.bf16, False) / batch

    def features_cached(self, cfg: TrainConfig, what: str) -> bool:
        if self.splits is None or self.cache_dir is None:
            return False
        s = self.splits
        if what == "labeled":
            key = labeled_key(cfg, len(s.labeled_y))
        elif what == "test":
            key = ("test",)
        else:
            key = unlabeled_key(unlabeled_subset(s, cfg.n_unlabeled))
        path = feature_path(self.cache_dir, feature_key(cfg, s.fingerprint, *key))
        return path is not None and path.exists()


def estimate_seconds(cfg: TrainConfig, splits: Splits, cache_dir: Path | None = None) -> float:
    """Estimated wall time of a run of cfg on splits, in seconds (data loading excluded)."""
    sizes = DataSizes(len(splits.labeled_y), len(splits.test_y), len(splits.unlabeled_x))
    return get_method(cfg.method).estimate(cfg, sizes, MeasuredTiming(cfg, splits, cache_dir))
