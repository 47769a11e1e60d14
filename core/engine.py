"""The training engine: schedule, optimiser, one epoch loop for every method, prediction and metrics.

`train_loop` owns what every method repeats: the shuffled batches, the optimiser and schedule, the
stop check before each step, the NaN check after it, the per-epoch row and the periodic test check.
What a step computes is the caller's `step_loss(idx)`: plain cross-entropy (`supervised_step`), or
FixMatch's labeled + unlabeled loss. Data stays a uint8 tensor on the device; nothing syncs with the
host per step except the NaN check.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.config import TrainConfig
from core.cudagraph import GraphedSteps, graphable
from core.device import autocast

RowFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]
# idx (batch indices on the device) -> (loss, number of correct labeled predictions)
StepLoss = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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
    """cfg's optimiser; lr (a tensor, for core.cudagraph) replaces cfg.lr, and capturable is Adam's mode
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


@torch.no_grad()
def predict(
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    device: torch.device,
    bf16: bool,
    batch_size: int | None = None,
    uint8_images: bool = True,
    progress: Callable[[float, str], None] | None = None,
    should_stop: StopFn | None = None,
) -> torch.Tensor:
    """Logits for all inputs, in large batches without gradients (float32, on the CPU).
    should_stop is asked before each batch; a yes raises InterruptedError."""
    # On CPU, batches of 64 beat 256 by 20-30% (cache); a GPU wants them large.
    batch_size = batch_size or (64 if device.type == "cpu" else 1024)
    out = []
    for start in range(0, len(inputs), batch_size):
        if should_stop and should_stop():
            raise InterruptedError("stopped during the final test pass")
        batch = inputs[start : start + batch_size].to(device, non_blocking=True)
        batch = batch.float().div_(255) if uint8_images else batch.float()
        with autocast(device, bf16):
            out.append(forward(batch).float().cpu())
        if progress:
            done = min(len(inputs), start + batch_size)
            progress(done / len(inputs), f"Final test pass: {done:,} / {len(inputs):,} images")
    return torch.cat(out)


def metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, Any]:
    pred = logits.argmax(1)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    per_class = (confusion.diag().float() / confusion.sum(1).clamp(min=1)).tolist()
    wrong = (pred != labels).nonzero().flatten()[:200]
    return {
        "accuracy": float((pred == labels).float().mean()),
        "per_class_acc": per_class,
        "confusion": confusion.tolist(),
        "wrong_indices": wrong.tolist(),
        "wrong_pred": pred[wrong].tolist(),
    }


def eval_subset(n_test: int, size: int) -> torch.Tensor:
    """A fixed random subset of the test set for the periodic checks (the same for every run)."""
    return torch.randperm(n_test, generator=torch.Generator().manual_seed(0))[: min(size, n_test)]


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


def optimiser_and_schedule(
    cfg: TrainConfig, params: list[nn.Parameter], n_items: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """cfg's optimiser over params, and its schedule stepped once per batch of cfg.batch_size of n_items."""
    opt = make_optimizer(cfg, params)
    steps_per_epoch = max(1, math.ceil(n_items / cfg.batch_size))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, steps_per_epoch))


def stopped_message(epoch: int) -> str:
    return f"stopped by request during epoch {epoch}"


def diverged_message(cfg: TrainConfig, epoch: int) -> str:
    advice = f"lower the learning rate (lr={cfg.lr:g}; try {cfg.lr / 10:g}) or use a warm-up"
    return f"the loss became NaN or infinite in epoch {epoch}: {advice}"


def epoch_row(epoch: int, loss_sum: float, correct: float, seen: int, lr: float, seconds: float) -> dict[str, Any]:
    """One history row of the training loop (core.multiseed writes the same rows per seed)."""
    return {
        "index": epoch,
        "unit": "epoch",
        "train_loss": loss_sum / max(1, seen),
        "train_acc": correct / max(1, seen),
        "lr": lr,
        "seconds": seconds,
        "test_acc": None,
    }


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
    graph: the step may be replayed as a CUDA graph where core.cudagraph.graphable says it can (the
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
