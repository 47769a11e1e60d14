"""Many seeds of one recipe at once: N copies of the network stacked with `torch.func.stack_module_state`
and trained together under `vmap`, so that one step of N seeds is one call per layer rather than N.

Each seed is the run it would have been alone (a test checks this within floating-point tolerance):
the same initialisation (the seed is set before its network is built), the same batch order (its own
generator) and the same augmentations (its own copy of the global RNG state, swapped in around its
augmentation), the same per-seed loss, and an optimiser that is elementwise, so one optimiser over the
stacked tensors is N optimisers. BatchNorm keeps per-seed running statistics: the buffers are stacked
too, and vmap updates each seed's slice in place.

A seed that diverges or is stopped leaves the group at that step, with its weights as they were then;
the others go on. Every seed ends as its own run record (core.runs.train.outcome_record), saved as its own
run by the caller. Where stacking does not pay (on a CPU, where the grouped convolutions vmap makes
are no faster than N plain ones: 5 stacked resnet18_cifar steps took 6.9x one step, 5 alone 5x),
`fit_seeds` trains the seeds one after another in the same process instead.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from core import settings
from core.config import ConfigError, TrainConfig
from core.data.augment import BatchAugment
from core.data.splits import Splits
from core.engine.device import autocast, environment, resolve_device, use_bf16
from core.engine.loop import train_lanes
from core.engine.predict import eval_subset, predict
from core.engine.stacked import RngState, StackingUnsupported, plain_batch_norm
from core.methods.base import Outcome, RunContext, finish
from core.methods.registry import get_method, validate
from core.methods.scratch import set_train_mode
from core.models import SmallDataNet
from core.runs.record import RunRecord
from core.runs.train import fit, outcome_record, seeded_model

MAX_SEEDS = 16
SeedRowFn = Callable[[int, dict[str, Any]], None]  # (index of the seed in the group, history row)
SeedStopFn = Callable[[int], bool]
SeedWeightsFn = Callable[[int, dict[str, torch.Tensor], str], None]


def stacks_here(cfg: TrainConfig) -> bool:
    """Whether seeds of cfg train stacked on this machine: a stackable recipe on a GPU, unless
    $SMALLDATA_STACK_SEEDS says "always" (a CPU too) or "never"."""
    mode = settings.current().stack_seeds
    if mode == "never" or not get_method(cfg.method).stacks_seeds(cfg):
        return False
    return mode == "always" or resolve_device(cfg.device).type == "cuda"


@dataclass
class Seed:
    """One seed of the group: its config, its network (for the final evaluation), its part of the loop."""

    cfg: TrainConfig
    model: SmallDataNet
    rng: RngState
    status: str = "running"  # running | finished | stopped | diverged
    message: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    kept: dict[str, torch.Tensor] | None = None  # its weights when it left the group early


def fit_seeds(
    cfg: TrainConfig,
    seeds: list[int],
    splits: Splits,
    *,
    on_row: SeedRowFn | None = None,
    should_stop: SeedStopFn | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[float, str], None] | None = None,
    run_ids: list[str | None] | None = None,
    keep_weights: SeedWeightsFn | None = None,
    stack: bool | None = None,
) -> list[RunRecord]:
    """cfg once per seed, as runs of their own; stacked (stack=None: where it pays, `stacks_here`)
    or one after another. Returns the records in the order of `seeds`."""
    cfg = validate(cfg)
    if not 1 <= len(seeds) <= MAX_SEEDS or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={seeds}: give 1 to {MAX_SEEDS} different seeds")
    run_ids = run_ids or [None] * len(seeds)
    cfgs = [validate(cfg.with_(seed=seed)) for seed in seeds]
    if stack is None:
        stack = stacks_here(cfg)
    if stack and not get_method(cfg.method).stacks_seeds(cfg):
        raise ConfigError(f"method={cfg.method} (finetune={cfg.finetune}) trains no whole network: seeds cannot stack")
    if not stack:
        return [
            fit(
                c,
                splits,
                on_row and (lambda row, i=i: on_row(i, row)),
                should_stop and (lambda i=i: should_stop(i)),
                cache_dir=cache_dir,
                progress=progress,
                run_id=run_ids[i],
                keep_weights=keep_weights and (lambda state, kind, i=i: keep_weights(i, state, kind)),
            )  # fmt: skip
            for i, c in enumerate(cfgs)
        ]
    created, t0 = time.time(), time.perf_counter()
    device = resolve_device(cfg.device)
    bf16 = use_bf16(device, cfg.precision)
    group = []
    for c in cfgs:  # as fit builds it, so that each seed starts, and draws its augmentations, as it would alone
        model = seeded_model(c, splits, device)
        group.append(Seed(c, model, RngState(device)))  # its batch order: the loop's generator of c.seed
    t = time.perf_counter()
    try:
        train_stacked(group, splits, device, bf16, on_row, should_stop)
    except StackingUnsupported as err:
        warnings.warn(f"seeds cannot train stacked here ({err}): training them one after another", stacklevel=2)
        return fit_seeds(cfg, seeds, splits, on_row=on_row, should_stop=should_stop, cache_dir=cache_dir,
                         progress=progress, run_ids=run_ids, keep_weights=keep_weights, stack=False)  # fmt: skip
    # Each seed's share of the shared time (building the networks, training), plus its own final pass.
    setup_s, train_s = (t - t0) / len(group), (time.perf_counter() - t) / len(group)
    records = []
    for i, seed in enumerate(group):
        t = time.perf_counter()
        seed.model.eval()
        stop = should_stop and (lambda i=i: should_stop(i))
        keep = keep_weights and (lambda state, kind, i=i: keep_weights(i, state, kind))
        ctx = RunContext(seed.cfg, splits, seed.model, device, bf16, None, stop, cache_dir, progress, keep)
        out: Outcome = finish(ctx, seed.status, seed.message, seed.history, seed.model,
                              timings={"train_s": train_s}, diagnostics={"stacked_seeds": seeds})  # fmt: skip
        total_s = setup_s + train_s + time.perf_counter() - t
        records.append(outcome_record(seed.cfg, out, splits, environment(device, bf16), run_ids[i], created, total_s))
    return records


def train_stacked(
    group: list[Seed],
    splits: Splits,
    device: torch.device,
    bf16: bool,
    on_row: SeedRowFn | None = None,
    should_stop: SeedStopFn | None = None,
) -> None:
    """The engine's loop (core.engine.loop.train_lanes) for the whole group at once, one lane per seed,
    with a vmapped step: each seed's status, history and (when it left early) weights end up in its Seed;
    the others' weights are written back into their networks."""
    cfg, n = group[0].cfg, len(group)
    base = group[0].model  # its structure runs every seed's weights (functional_call)
    params, buffers = stack_module_state([seed.model for seed in group])
    augment = BatchAugment(cfg.augment, len(splits.classes))
    inputs, targets = splits.labeled_x.to(device), splits.labeled_y.to(device)
    subset = eval_subset(len(splits.test_y), cfg.eval_subset)
    # On a GPU, BatchNorm runs in plain operations (batch_norm_in_plain_ops) and the stacked step in
    # float32; its test passes stay bf16.
    on_gpu = device.type == "cuda"
    train_bf16 = bf16 and not on_gpu
    steps = [0]

    def forward(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    def step_loss(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """idx: [seeds, batch] -> each seed's loss and correct count, each seed's images augmented as alone."""
        xs, ys = [], []
        for seed, rows in zip(group, idx, strict=True):
            with seed.rng.active():
                x, y = augment(inputs[rows], targets[rows])
            xs.append(x)
            ys.append(y)
        x, y = torch.stack(xs), torch.stack(ys)
        with autocast(device, train_bf16):
            logits = vmap(forward)(params, buffers, x).float()
        per_item = F.cross_entropy(logits.flatten(0, 1), y.flatten(0, 1), label_smoothing=cfg.label_smoothing,
                                   reduction="none")  # fmt: skip
        hard = y.argmax(-1) if y.dim() == 3 else y  # MixUp/CutMix give soft targets
        return per_item.view(n, -1).mean(1), (logits.argmax(-1) == hard).sum(1)

    def check() -> list[float]:
        """Each seed's accuracy on the test subset: predict of all seeds at once (images x seeds x classes)."""
        base.eval()
        logits = predict(lambda x: vmap(forward, in_dims=(0, 0, None))(params, buffers, x).transpose(0, 1),
                         splits.test_x[subset], device, bf16)  # fmt: skip
        return (logits.argmax(-1) == splits.test_y[subset][:, None]).float().mean(0).tolist()

    def leave(i: int) -> None:
        group[i].kept = {name: t[i].detach().clone() for name, t in (params | buffers).items()}

    def count_step() -> None:
        steps[0] += 1

    # vmap has no batching rule for the in-place as_strided_ inside adaptive pooling and says so on every
    # call; it falls back to a loop over seeds for that one small op.
    warnings.filterwarnings("ignore", message=".*batching rule for aten::as_strided_", category=UserWarning)
    with plain_batch_norm(base, on_gpu):  # the whole run, its test checks too
        try:
            results = train_lanes(
                [p for p in params.values() if p.requires_grad], len(splits.labeled_y), cfg, step_loss,
                seeds=[seed.cfg.seed for seed in group], device=device,
                set_train_mode=lambda: set_train_mode(base, cfg.finetune), check=check, on_row=on_row,
                should_stop=should_stop, on_leave=leave, after_step=count_step,
            )  # fmt: skip
        except RuntimeError as err:  # where a device cannot stack, the first forward or backward fails
            if steps[0] == 0:  # nothing has trained yet: the caller can fall back
                raise StackingUnsupported(str(err)) from err
            raise
    for i, (seed, result) in enumerate(zip(group, results, strict=True)):
        seed.status, seed.message, seed.history = result.status, result.message, result.history
        state = seed.kept or {name: t[i].detach() for name, t in (params | buffers).items()}
        with torch.no_grad():
            for name, tensor in (*seed.model.named_parameters(), *seed.model.named_buffers()):
                tensor.copy_(state[name])
