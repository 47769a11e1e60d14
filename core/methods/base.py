"""What a method is: the config fields it reads, its presets, its checks, its time estimate and its run.

Each method lives in one file of core/methods/ and is registered by one line in core/registry.py
(or by `register` from anywhere, a test for instance). `fit` (core.runs.train) builds the model and the
`RunContext`, calls `Method.run`, and turns the `Outcome` into the run record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from core.config import TrainConfig, is_on
from core.data.splits import Splits
from core.engine.loop import RowFn
from core.engine.predict import StopFn, eval_subset, metrics, predict
from core.models import SmallDataNet

ProgressFn = Callable[[float, str], None]

# The optimisation fields of every method that trains with the engine's loop.
OPTIMISATION = ("epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "schedule",
                "step_every", "step_gamma", "warmup_epochs", "label_smoothing")  # fmt: skip
PRETRAINED = ("weights", "resolution", "normalize")
FROZEN = (*PRETRAINED, "flip_features")
# What the message of a stopped run says when its test accuracy is the last check (core.runs.evaluate replaces it).
SKIPPED_TEST_PASS = "test accuracy from the last check on a subset, the full test pass was skipped"


@dataclass
class RunContext:
    cfg: TrainConfig
    splits: Splits
    model: SmallDataNet
    device: torch.device
    bf16: bool
    on_row: RowFn | None = None
    should_stop: StopFn | None = None
    cache_dir: Path | None = None
    progress: ProgressFn | None = None
    # The run store's: (state_dict, kind) kept beside the record (core.runs.store), for prediction and evaluation.
    keep_weights: Callable[[dict[str, torch.Tensor], str], None] | None = None

    @property
    def n_classes(self) -> int:
        return len(self.splits.classes)

    def emit(self, row: dict[str, Any]) -> None:
        if self.on_row:
            self.on_row(row)

    def note(self, fraction: float, text: str) -> None:
        if self.progress:
            self.progress(fraction, text)


@dataclass
class Outcome:
    status: str  # finished | stopped | diverged
    message: str
    history: list[dict[str, Any]]
    train: dict[str, Any]  # core.engine.predict.metrics of the labeled images
    test: dict[str, Any]  # ... and of the test set
    timings: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)


def finish(
    ctx: RunContext,
    status: str,
    message: str,
    history: list[dict[str, Any]],
    forward: Callable[[torch.Tensor], torch.Tensor],
    *,
    test_inputs: torch.Tensor | None = None,
    train_inputs: torch.Tensor | None = None,
    images: bool = True,
    timings: dict[str, float] | None = None,
    diagnostics: dict[str, Any] | None = None,
) -> Outcome:
    """The final evaluation every method ends with: `forward` on the whole test set and on the
    labeled images (or on their features, with images=False).

    A stopped run of a network on images skips the full test pass (minutes on a CPU: Stop must take
    effect at once): its test accuracy is the last periodic check's, and the record says so. Its
    weights are kept beside the record, so that the Compare page can evaluate it later (core.runs.evaluate).
    A head on frozen features is always kept (kilobytes); a whole network when cfg.keep_weights says so."""
    s = ctx.splits
    t = time.perf_counter()
    bf16 = ctx.bf16 and images
    test_inputs = s.test_x if test_inputs is None else test_inputs
    train_inputs = s.labeled_x if train_inputs is None else train_inputs
    test = None
    if not (status == "stopped" and images):
        try:
            logits = predict(forward, test_inputs, ctx.device, bf16, uint8_images=images, progress=ctx.progress,
                             should_stop=ctx.should_stop if images else None)  # fmt: skip
            test = metrics(logits, s.test_y, ctx.n_classes) | {"images": len(s.test_y)}
        except InterruptedError:  # Stop pressed during the final test pass
            status, message = "stopped", "stopped by request during the final test pass"
    if test is None:
        checks = [row["test_acc"] for row in history if row.get("test_acc") is not None]
        test = {"accuracy": checks[-1] if checks else None, "partial": True,
                "images": min(ctx.cfg.eval_subset, len(s.test_y)) if checks else 0}  # fmt: skip
        message += f"; {SKIPPED_TEST_PASS}"
    if ctx.keep_weights and isinstance(forward, torch.nn.Module):
        if not images:  # a head on frozen features: kilobytes, always kept
            ctx.keep_weights(forward.state_dict(), "head")
        elif test.get("partial") or ctx.cfg.keep_weights:  # a stopped run must be evaluable later
            ctx.keep_weights(forward.state_dict(), "network")
    eval_s = time.perf_counter() - t
    train = metrics(predict(forward, train_inputs, ctx.device, bf16, uint8_images=images), s.labeled_y, ctx.n_classes)
    timings = (timings or {}) | {"eval_s": eval_s}
    return Outcome(status, message, history, train, test, timings, diagnostics or {})


def subset_check(
    ctx: RunContext, forward: Callable[[torch.Tensor], torch.Tensor], test_inputs: torch.Tensor | None = None
) -> Callable[[], float]:
    """The periodic check of train_loop: forward's accuracy on the fixed test subset (cfg.eval_subset
    images, the same for every run), on the test images or on test_inputs, their features. A network is
    put in evaluation mode first (train_loop puts it back in training mode at the next epoch), so that its
    BatchNorm layers neither use nor learn the test images' statistics."""
    s, images = ctx.splits, test_inputs is None
    subset = eval_subset(len(s.test_y), ctx.cfg.eval_subset)
    inputs, labels = (s.test_x if images else test_inputs)[subset], s.test_y[subset]

    def check() -> float:
        if isinstance(forward, torch.nn.Module):
            forward.eval()
        logits = predict(forward, inputs, ctx.device, ctx.bf16 and images, uint8_images=images)
        return float((logits.argmax(1) == labels).float().mean())

    return check


class Timing(Protocol):
    """Measured costs on this device, for estimates (core.methods.step_timings provides one)."""

    def train_step(self, arch: str, resolution: int, batch: int) -> float: ...

    def per_image(self, arch: str, resolution: int) -> float: ...

    def features_cached(self, cfg: TrainConfig, what: str) -> bool: ...

    def head_step(self, dim: int) -> float: ...

    def centroid_pass(self, dim: int) -> float:
        """A head of class centroids predicting one row of features, their power transform included."""
        ...

    def graph(self, n: int, dim: int, k: int) -> float: ...

    def fold(self, arch: str) -> float:
        """Folding the network's BatchNorm layers into its convolutions, once per feature extraction."""
        ...

    def spread(self, n: int, k: int, classes: int) -> float:
        """One more label spreading over a k-NN graph of n nodes that is built already."""
        ...

    def load_seconds(self, nbytes: int) -> float:
        """Reading nbytes of cached features back from the disk."""
        ...


@dataclass(frozen=True)
class DataSizes:
    labeled: int
    test: int
    unlabeled: int
    classes: int = 10


class Method:
    """The base of every method. Subclasses set the class attributes and override `run`."""

    name: str = ""
    summary: str = ""
    help: str = ""
    unit: str = "epoch"  # what one history row counts
    fields: tuple[str, ...] = ()  # the config fields this method reads (besides n_labeled, seed, device)
    presets: dict[str, dict[str, Any]] = {}  # name -> the config fields it sets
    needs_unlabeled: bool = False
    # Values this method always runs with, whatever else is asked (its `check` refuses others): an
    # experiment's identity (core.methods.registry.canonical) holds them.
    fixed: dict[str, Any] = {}

    def check(self, cfg: TrainConfig) -> None:
        """Raise core.config.ConfigError for combinations this method cannot run."""

    def total_units(self, cfg: TrainConfig) -> int:
        return cfg.epochs

    def tests_images(self, cfg: TrainConfig) -> bool:
        """Whether the final test pass runs the network on the test images (minutes on a CPU), rather
        than a head on cached features (a blink)."""
        return True

    def stacks_seeds(self, cfg: TrainConfig) -> bool:
        """Whether seeds of this recipe can train together, stacked (core.runs.multiseed): a whole network
        trained end to end by the engine's supervised loop, nothing else per seed."""
        return False

    def estimate(self, cfg: TrainConfig, sizes: DataSizes, timing: Timing) -> float:
        """Seconds the run will take on this device; the default: epochs of training steps and a test pass."""
        steps = cfg.epochs * -(-min(cfg.n_labeled, sizes.labeled) // cfg.batch_size)
        step = timing.train_step(cfg.arch, cfg.resolution, cfg.batch_size)
        return steps * step + evaluation_seconds(cfg, sizes, timing)

    def run(self, ctx: RunContext) -> Outcome:
        raise NotImplementedError


def evaluation_seconds(cfg: TrainConfig, sizes: DataSizes, timing: Timing) -> float:
    """The final test pass, the labeled images' pass (train accuracy) and the periodic checks on a subset."""
    per = timing.per_image(cfg.arch, cfg.resolution) * (2 if is_on("flip_test", cfg) else 1)
    checks = (cfg.epochs // cfg.eval_every) if cfg.eval_every else 0
    return (sizes.test + min(cfg.n_labeled, sizes.labeled) + checks * min(cfg.eval_subset, sizes.test)) * per
