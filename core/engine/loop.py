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
    """One history row of the training loop (one per lane, for stacked seeds)."""
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
    step's only effects are its loss, backward and the optimiser step: no after_step). One network is one
    lane of `train_lanes`."""
    (result,) = train_lanes(
        params, n_items, cfg, step_loss, seeds=[cfg.seed], device=device, set_train_mode=set_train_mode,
        check=check and (lambda: [check()]), on_row=on_row and (lambda i, row: on_row(row)),
        should_stop=should_stop and (lambda i: should_stop()), after_step=after_step, row_extras=row_extras,
        graph=graph,
    )  # fmt: skip
    return result


def train_lanes(
    params: list[nn.Parameter],
    n_items: int,
    cfg: TrainConfig,
    step_loss: StepLoss,
    *,
    seeds: list[int],
    device: torch.device,
    set_train_mode: Callable[[], None] = lambda: None,
    check: Callable[[], list[float]] | None = None,
    on_row: Callable[[int, dict[str, Any]], None] | None = None,
    should_stop: Callable[[int], bool] | None = None,
    on_leave: Callable[[int], None] | None = None,
    after_step: Callable[[], None] | None = None,
    row_extras: Callable[[], dict[str, Any]] | None = None,
    graph: bool = False,
) -> list[LoopResult]:
    """The loop, for one lane per seed: N networks stacked in params (core.runs.multiseed), or one.

    Each lane has its own batch order (a generator seeded with its seed). step_loss gets the batch indices,
    one row per lane ([lanes, batch]; a plain [batch] where there is one lane), and returns each lane's
    loss and correct count ([lanes], or scalars for one lane). A lane that is stopped or diverges leaves
    at that step (on_leave(i) is told, before the next step changes its weights); its loss no longer
    reaches the gradient, and the others go on. check() gives each lane's test-subset accuracy."""
    lanes = len(seeds)
    graphed, steps_per_epoch = None, max(1, math.ceil(n_items / cfg.batch_size))

    def lr_at(step: int) -> float:
        return cfg.lr * lr_factor(cfg, step, steps_per_epoch)

    if graph and lanes == 1 and after_step is None and graphable(cfg, device, n_items):
        lr = torch.tensor(cfg.lr, device=device)  # read on the device by each replay
        # Capturable Adam keeps its step count on the device; a CPU (only a test takes this branch there) cannot.
        opt = make_optimizer(cfg, params, lr=lr, capturable=device.type == "cuda")
        graphed = GraphedSteps(opt, lr, lr_at, step_loss, cfg.batch_size, device)
    opt, sched = (graphed.opt, None) if graphed else optimiser_and_schedule(cfg, params, n_items)
    orders = [torch.Generator().manual_seed(seed) for seed in seeds]
    histories: list[list[dict[str, Any]]] = [[] for _ in seeds]
    results: list[LoopResult | None] = [None] * lanes
    alive = list(range(lanes))
    mask = torch.ones(lanes, dtype=torch.bool, device=device)  # the lanes whose loss reaches the gradient

    def leave(i: int, status: str, message: str) -> None:
        results[i] = LoopResult(status, histories[i], message)
        alive.remove(i)
        mask[i] = False
        if on_leave:
            on_leave(i)

    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        set_train_mode()
        loss_sum = torch.zeros(lanes, device=device)
        correct = torch.zeros(lanes, device=device)
        seen = 0
        lr = lr_at(graphed.done) if graphed else opt.param_groups[0]["lr"]
        batches = zip(
            *(torch.randperm(n_items, generator=order).split(cfg.batch_size) for order in orders), strict=True
        )
        for idxs in batches:
            for i in [i for i in alive if should_stop and should_stop(i)]:
                leave(i, "stopped", stopped_message(epoch))
            if not alive:
                break
            if len(idxs[0]) < 2 and n_items >= 2:
                continue  # BatchNorm cannot train on a batch of one
            idx = (idxs[0] if lanes == 1 else torch.stack(idxs)).to(device)
            # A replay is loss, backward and step at once: there a NaN loss has already reached the weights.
            loss, right = graphed.step(idx) if graphed else step_loss(idx)
            finite = torch.isfinite(loss.detach().reshape(-1)).tolist()  # one sync per step, cheap next to it
            for i in [i for i in alive if not finite[i]]:
                leave(i, "diverged", diverged_message(cfg, epoch))
            if not alive:
                break
            if not graphed:
                opt.zero_grad(set_to_none=True)
                # Lanes are independent: the sum's gradient is each lane's own.
                (loss if lanes == 1 else torch.where(mask, loss, 0.0).sum()).backward()
                opt.step()
                sched.step()
            if after_step:
                after_step()
            loss_sum += loss.detach().reshape(-1) * len(idxs[0])
            correct += right.reshape(-1)
            seen += len(idxs[0])
        if not alive:
            break
        seconds = time.perf_counter() - start
        extras = row_extras() if row_extras else {}
        tested = check() if check and cfg.eval_every and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs) else None
        for i in alive:
            row = epoch_row(epoch, float(loss_sum[i]), float(correct[i]), seen, lr, seconds) | extras
            row["test_acc"] = tested[i] if tested else row["test_acc"]
            histories[i].append(row)
            if on_row:
                on_row(i, row)
    return [result or LoopResult("finished", histories[i]) for i, result in enumerate(results)]
