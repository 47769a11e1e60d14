"""Optimisers and schedules from a config, and weight averaging: the learning rate as a pure function of the step."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from core.config import TrainConfig


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning-rate multiplier at a step: a pure function, so it is easy to plot and test."""
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        warmup = warmup or int(0.3 * total)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "step":
        return cfg.step_gamma ** ((step // steps_per_epoch) // cfg.step_every)
    if cfg.schedule in ("cosine", "onecycle"):
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return 1.0


def make_optimizer(
    cfg: TrainConfig, params: list[nn.Parameter], lr: float | torch.Tensor | None = None, capturable: bool = False
) -> torch.optim.Optimizer:
    """cfg's optimiser; lr (a tensor, for core.engine.cudagraph) replaces cfg.lr, and capturable is Adam's mode
    that keeps its step count on the device."""
    lr = cfg.lr if lr is None else lr
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )  # fmt: skip
    adam = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    if isinstance(lr, torch.Tensor) and not capturable:
        return adam(params, lr=lr, weight_decay=cfg.weight_decay, foreach=False)  # foreach wants a float lr
    return adam(params, lr=lr, weight_decay=cfg.weight_decay, capturable=capturable)


def optimiser_and_schedule(
    cfg: TrainConfig, params: list[nn.Parameter], n_items: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """cfg's optimiser over params, and its schedule stepped once per batch of cfg.batch_size of n_items."""
    opt = make_optimizer(cfg, params)
    steps_per_epoch = max(1, math.ceil(n_items / cfg.batch_size))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, steps_per_epoch))


def weight_average(model: nn.Module, decay: float) -> tuple[nn.Module, Callable[[], None]]:
    """An exponential moving average of model's weights (a frozen copy) and the update to call after each
    step; with decay 0, the model itself and no update. Buffers that are not floats (BatchNorm's step
    count) are copied."""
    if decay <= 0:
        return model, lambda: None
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    pairs = list(zip(ema.state_dict().values(), model.state_dict().values(), strict=True))
    floats = [pair for pair in pairs if pair[0].dtype.is_floating_point]
    others = [pair for pair in pairs if not pair[0].dtype.is_floating_point]
    averaged, current = [e for e, _ in floats], [m for _, m in floats]

    @torch.no_grad()
    def update() -> None:
        # One fused call for all tensors: a GPU step of a small network is otherwise hundreds of launches.
        torch._foreach_lerp_(averaged, current, 1 - decay)
        for pe, pm in others:
            pe.copy_(pm)

    return ema, update
