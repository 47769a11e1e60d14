"""How long will a run take on this device? Measured, not guessed: a few timed steps, extrapolated."""

from __future__ import annotations

import math
import time
from functools import lru_cache

import torch
import torch.nn.functional as F

from core import features as feat
from core.config import TrainConfig
from core.models import create_model
from core.train import AUGMENTED_VIEWS, resolve_device, use_bf16


@lru_cache(maxsize=64)
def _step_seconds(arch: str, resolution: int, batch: int, device: str, bf16: bool, train: bool) -> float:
    """Seconds for one training step (or one inference batch) of `batch` 32x32 images."""
    dev = torch.device(device)
    model = create_model(arch, 10, "", resolution, False).to(dev)
    x = torch.rand(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        if train:
            model.train()
            with feat.autocast(dev, bf16):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            model.eval()
            with torch.no_grad(), feat.autocast(dev, bf16):
                model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: first calls pay for kernel selection
    t = time.perf_counter()
    for _ in range(2):
        step()
    return (time.perf_counter() - t) / 2


def estimate_seconds(cfg: TrainConfig, n_labeled: int, n_test: int, n_unlabeled: int = 0) -> float:
    """Estimated wall time of a run of cfg, in seconds (data loading excluded)."""
    device = resolve_device(cfg.device)
    bf16 = use_bf16(device, cfg.precision)
    eval_batch = 64 if device.type == "cpu" else 1024
    infer = _step_seconds(cfg.arch, cfg.resolution, eval_batch, str(device), bf16, False) / eval_batch
    test_s = n_test * infer
    checks = (cfg.epochs // cfg.eval_every) if cfg.eval_every else 0
    checks_s = checks * min(cfg.eval_subset, n_test) * infer
    if cfg.method == "semi" and cfg.semi == "fixmatch":
        batch = cfg.batch_size * (1 + 2 * cfg.mu)
        step = _step_seconds(cfg.arch, cfg.resolution, batch, str(device), bf16, True)
        return cfg.epochs * step + test_s + checks_s
    if cfg.finetune == "head":
        views = AUGMENTED_VIEWS if cfg.augment not in ("", "none") else 1
        unlabeled = (cfg.n_unlabeled or n_unlabeled) if cfg.method == "semi" else 0
        return (n_labeled * views + n_test + unlabeled) * infer + 2.0 * (cfg.rounds if cfg.method == "semi" else 1)
    steps = cfg.epochs * math.ceil(n_labeled / cfg.batch_size)
    step = _step_seconds(cfg.arch, cfg.resolution, cfg.batch_size, str(device), bf16, True)
    return steps * step + test_s + checks_s
