"""`fit`: one config, run by its method (core.methods.registry), to one run record (core.runs.record); `execute`:
the same, saved to the run store whatever happens.

Progress leaves through `on_row` (one history row per epoch or round) and `progress` (notes such as
feature extraction), a stop request arrives through `should_stop`. Every outcome, a failure before
or during the run included, becomes a `RunRecord` here and nowhere else.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from core.access import LOCAL
from core.config import TrainConfig, is_on
from core.data.splits import Splits
from core.engine.device import environment, place, resolve_device, use_bf16
from core.engine.loop import RowFn
from core.engine.predict import StopFn
from core.methods.base import Outcome, ProgressFn, RunContext
from core.methods.registry import get_method, validate
from core.models import SmallDataNet, create_model
from core.runs.record import Metrics, RunRecord, new_run_id
from core.runs.store import RunStore


def dataset_info(splits: Splits) -> dict[str, object]:
    return {
        "source": splits.source,
        "fingerprint": splits.fingerprint,
        "classes": list(splits.classes),
        "labeled": len(splits.labeled_y),
        "unlabeled": len(splits.unlabeled_x),
        "test": len(splits.test_y),
        "name": splits.label,
    }


def seeded_model(cfg: TrainConfig, splits: Splits, device: torch.device) -> SmallDataNet:
    """cfg's network on its device, built right after the seed is set: a run's initialisation, and where
    its global RNG stream (augmentation) starts (core.runs.multiseed builds each seed of a group this way).
    A whitened stem is computed from the labeled images only."""
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.arch, len(splits.classes), cfg.weights, cfg.resolution, cfg.normalize)
    model.set_trainable(cfg.finetune)
    model.flip_test = is_on("flip_test", cfg)
    if cfg.whiten_stem:
        model.whiten_stem(splits.labeled_x)
    return place(model, device)


def fit(
    cfg: TrainConfig,
    splits: Splits,
    on_row: RowFn | None = None,
    should_stop: StopFn | None = None,
    cache_dir: Path | None = None,
    progress: ProgressFn | None = None,
    run_id: str | None = None,
    keep_weights: Callable[[dict[str, torch.Tensor], str], None] | None = None,
) -> RunRecord:
    """Runs one config to the end (or stop, or divergence) and returns its run record.
    keep_weights receives (state_dict, kind) of what the run keeps beside its record (core.methods.base.finish)."""
    cfg = validate(cfg)
    if splits.cross_validated:  # no test set: scored by k-fold cross-validation over the labeled images
        from core.runs.crossval import cross_validate

        return cross_validate(cfg, splits, fit, should_stop=should_stop, cache_dir=cache_dir, progress=progress,
                              run_id=run_id, keep_weights=keep_weights)  # fmt: skip
    method = get_method(cfg.method)
    if method.needs_unlabeled and len(splits.unlabeled_x) == 0:
        raise ValueError(f"method={cfg.method} needs unlabeled images, and this dataset has none")
    created = time.time()
    device = resolve_device(cfg.device)
    bf16 = use_bf16(device, cfg.precision)
    t0 = time.perf_counter()
    model = seeded_model(cfg, splits, device)
    rows: list[dict] = []

    def keep_row(row: dict) -> None:
        rows.append(row)
        if on_row:
            on_row(row)

    ctx = RunContext(cfg, splits, model, device, bf16, keep_row, should_stop, cache_dir, progress, keep_weights)
    try:
        out = method.run(ctx)
    except InterruptedError as err:  # stopped before there was anything to evaluate (feature extraction)
        out = Outcome("stopped", str(err), rows, {"accuracy": None}, {"accuracy": None, "images": 0})
    return outcome_record(cfg, out, splits, environment(device, bf16), run_id, created, time.perf_counter() - t0)


def outcome_record(
    cfg: TrainConfig, out: Outcome, splits: Splits, env: dict, run_id: str | None, created: float, total_s: float
) -> RunRecord:
    """The record of a run that got as far as its method's Outcome (fit, and core.runs.multiseed per seed)."""
    method = get_method(cfg.method)
    return RunRecord(
        run_id=run_id or new_run_id(cfg),
        status=out.status,
        config=cfg,
        unit=method.unit,
        total_units=method.total_units(cfg),
        history=out.history,
        metrics=Metrics(train_acc=out.train["accuracy"]).with_test(out.test),
        message=out.message,
        dataset=dataset_info(splits),
        env=env,
        timings=out.timings | {"total_s": total_s},
        diagnostics=out.diagnostics,
        created=created,
    )


def failure_advice(err: BaseException) -> str:
    text = str(err)
    if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower():
        return f"out of memory ({text.splitlines()[0][:200]}): lower the batch size or the resolution"
    if isinstance(err, MemoryError):
        return "out of memory: lower the batch size, the resolution or the number of unlabeled images"
    # The first line only (a traceback follows in the record); ours can be long, they say where to put a file.
    return f"{type(err).__name__}: {text.splitlines()[0][:800] if text else ''}"


def failed_record(
    cfg: TrainConfig,
    err: BaseException,
    *,
    splits: Splits | None = None,
    run_id: str | None = None,
    history: list | None = None,
    status: str = "failed",
    started: float | None = None,
) -> RunRecord:
    """The record of a run that failed (or whose worker died: status="interrupted"), with advice."""
    unit = "epoch"
    total = cfg.epochs
    try:
        method = get_method(cfg.method)
        unit, total = method.unit, method.total_units(cfg)
    except ValueError:
        pass
    return RunRecord(
        run_id=run_id or new_run_id(cfg),
        status=status,
        config=cfg,
        unit=unit,
        total_units=total,
        history=list(history or []),
        message=failure_advice(err),
        dataset=dataset_info(splits) if splits is not None else {},
        timings={"total_s": time.time() - started} if started else {},
        created=started or time.time(),
        traceback="".join(traceback.format_exception(err, limit=5)),
    )


def execute(
    cfg: TrainConfig,
    splits: Splits,
    store: RunStore,
    *,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cache_dir=None,
    progress=None,
    run_id: str | None = None,
    owner: str = LOCAL,
) -> RunRecord:
    """Runs cfg and saves the run as `owner`'s, also when it stops, diverges or fails; returns the saved record."""
    run_id = run_id or new_run_id(cfg)
    started = time.time()
    rows: list[dict[str, Any]] = []

    def keep_row(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_row:
            on_row(row)

    try:
        record = fit(cfg, splits, keep_row, should_stop, cache_dir=cache_dir, progress=progress, run_id=run_id,
                     keep_weights=lambda state, kind: store.save_weights(run_id, state, kind))  # fmt: skip
    except (ValueError, RuntimeError, MemoryError) as err:  # bad weights, OOM, ...: saved as failed
        record = failed_record(cfg, err, splits=splits, run_id=run_id, history=rows, started=started)
    record.owner = owner
    store.save(record)
    return record
