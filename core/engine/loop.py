"""The training loop: one epoch loop for every method, and for many seeds at once.

`train_loop` owns what every method repeats: the shuffled batches, the optimiser and schedule, the
stop check before each step, the NaN check after it, the per-epoch row and the periodic test check.
What a step computes is the caller's `step_loss(idx)`: plain cross-entropy (`supervised_step`), or
FixMatch's labeled + unlabeled loss. Data stays a uint8 tensor on the device; nothing syncs with the
host per step except the NaN check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.config import TrainConfig
from core.engine.cudagraph import GraphedSteps, graphable
from core.engine.device import autocast
from core.engine.optim import lr_factor, make_optimizer, optimiser_and_schedule
from core.engine.predict import StopFn

RowFn = Callable[[dict[str, Any]], None]
# idx (batch indices on the device) -> (loss, number of correct labeled predictions)
StepLoss = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def supervised_step(
    module: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    cfg: TrainConfig,
    device: torch.device,
    bf16: bool,
    augment: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
) -> StepLoss:
    """Cross-entropy on augmented batches of (inputs, targets), which move to the device once."""
    inputs, targets = inputs.to(device), targets.to(device)

    def step(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = augment(inputs[idx], targets[idx])
        with autocast(device, bf16):
            logits = module(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        hard = y.argmax(1) if y.dim() == 2 else y  # MixUp/CutMix give soft targets
        return loss, (logits.argmax(1) == hard).sum()

    return step


def stopped_message(epoch: int) -> str:
    return f"stopped by request during epoch {epoch}"


def diverged_message(cfg: TrainConfig, epoch: int) -> str:
    advice = f"lower the learning rate (lr={cfg.lr:g}; try {cfg.lr / 10:g}) or use a warm-up"
    return f"the loss became NaN or infinite in epoch {epoch}: {advice}"


def epoch_row(epoch: int, loss_sum: float, correct: float, seen: int, lr: float, seconds: float) -> dict[str, Any]:
    """One history row of the training loop (core.runs.multiseed writes the same rows per seed)."""
    return {
        "index": epoch,
        "unit": "epoch",
        "train_loss": loss_sum / max(1, seen),
        "train_acc": correct / max(1, seen),
        "lr": lr,
        "seconds": seconds,
        "test_acc": None,
    }


@dataclass
class LoopResult:
    status: str  # finished | stopped | diverged
    history: list[dict[str, Any]]
    message: str = ""


def train_loop(
    params: list[nn.Parameter],
    n_items: int,
    cfg: TrainConfig,
    step_loss: StepLoss,
    *,
    device: torch.device,
    set_train_mode: Callable[[], None] = lambda: None,
    check: Callable[[], float] | None = None,
    on_row: RowFn | None = None,
    should_stop: StopFn | None = None,
    after_step: Callable[[], None] | None = None,
    row_extras: Callable[[], dict[str, Any]] | None = None,
    graph: bool = False,
) -> LoopResult:
    """cfg.epochs epochs over n_items in shuffled batches of cfg.batch_size; one history row per epoch.
    graph: the step may be replayed as a CUDA graph where core.engine.cudagraph.graphable says it can (the
    step's only effects are its loss, backward and the optimiser step: no after_step)."""
    graphed, steps_per_epoch = None, max(1, math.ceil(n_items / cfg.batch_size))

    def lr_at(step: int) -> float:
        return cfg.lr * lr_factor(cfg, step, steps_per_epoch)

    if graph and after_step is None and graphable(cfg, device, n_items):
        lr = torch.tensor(cfg.lr, device=device)  # read on the device by each replay
        opt = make_optimizer(cfg, params, lr=lr, capturable=True)
        graphed = GraphedSteps(opt, lr, lr_at, step_loss, cfg.batch_size, device)
    opt, sched = (graphed.opt, None) if graphed else optimiser_and_schedule(cfg, params, n_items)
    order_rng = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        set_train_mode()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        lr = lr_at(graphed.done) if graphed else opt.param_groups[0]["lr"]
        for idx in torch.randperm(n_items, generator=order_rng).split(cfg.batch_size):
            if should_stop and should_stop():
                return LoopResult("stopped", history, stopped_message(epoch))
            if len(idx) < 2 and n_items >= 2:
                continue  # BatchNorm cannot train on a batch of one
            # A replay is loss, backward and step at once: there a NaN loss has already reached the weights.
            loss, right = graphed.step(idx.to(device)) if graphed else step_loss(idx.to(device))
            if not torch.isfinite(loss):  # one sync per step; cheap next to the step itself
                return LoopResult("diverged", history, diverged_message(cfg, epoch))
            if not graphed:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            if after_step:
                after_step()
            loss_sum += loss.detach() * len(idx)
            correct += right
            seen += len(idx)
        row = epoch_row(epoch, float(loss_sum), float(correct), seen, lr, time.perf_counter() - start)
        if row_extras:
            row |= row_extras()
        if check and cfg.eval_every and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            row["test_acc"] = check()
        history.append(row)
        if on_row:
            on_row(row)
    return LoopResult("finished", history)
