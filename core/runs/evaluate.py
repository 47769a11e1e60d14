"""Evaluating a saved run again: the full test pass that Stop skipped ("Evaluate now" on Compare).

A stopped run of a network on images is saved at once with its last periodic check (a subset of the
test set) and its weights beside the record. This reloads those weights (weights_only=True), runs
the whole test set with progress and stop, and saves the record again with full metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from core.access import Actor
from core.config import is_on
from core.data.splits import Splits
from core.engine.device import place, resolve_device, use_bf16
from core.engine.predict import StopFn, metrics, predict
from core.methods.base import SKIPPED_TEST_PASS
from core.models import SmallDataNet, create_model
from core.runs.record import RunRecord
from core.runs.store import RunStore, StoreError, same_test_set


def can_evaluate(store: RunStore, record: RunRecord) -> bool:
    """A run whose test accuracy is partial and whose weights were kept."""
    return record.metrics.partial and store.has_weights(record.run_id) and record.config.finetune != "head"


def load_kept(module: torch.nn.Module, state: dict[str, torch.Tensor], record: RunRecord) -> None:
    """state into module; a file for another model says so rather than print the key lists."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        msg = f"the weights kept for {record.run_id} do not fit {record.config.arch} ({str(err)[:120]}...)"
        raise StoreError(msg) from None


def kept_network(record: RunRecord, state: dict[str, torch.Tensor], n_classes: int) -> SmallDataNet:
    """The run's whole network, rebuilt from its config and its kept state_dict (on the CPU)."""
    cfg = record.config
    model = create_model(cfg.arch, n_classes, "", cfg.resolution, cfg.normalize)
    model.flip_test = is_on("flip_test", cfg)  # it predicts as the run evaluated it (core.runs.train.seeded_model)
    load_kept(model, state, record)
    return model


def evaluate_saved(
    store: RunStore,
    run_id: str,
    splits: Splits,
    *,
    progress: Callable[[float, str], None] | None = None,
    should_stop: StopFn | None = None,
    by: Actor,
) -> RunRecord:
    """The full test pass of a saved run, for its owner or a teacher (`by`); returns the record saved with its
    new metrics. Raises StoreError (no such run, no weights, another dataset), PermissionDenied (another's
    run) and InterruptedError (Stop pressed)."""
    record = store.check(run_id, by, "evaluate")
    if not same_test_set(record, splits.fingerprint):
        raise StoreError(f"run {run_id} was trained on another dataset than {splits.source}: load that dataset first")
    cfg = record.config
    device = resolve_device(cfg.device)
    bf16 = use_bf16(device, cfg.precision)
    kept = store.load_weights(run_id)
    if kept.kind != "network":
        raise StoreError(f"run {run_id} kept only its head: its test pass runs on cached features, nothing to redo")
    model = kept_network(record, kept.state, len(splits.classes))
    place(model, device).eval()
    t = time.perf_counter()
    logits = predict(model, splits.test_x, device, bf16, progress=progress, should_stop=should_stop)
    test = metrics(logits, splits.test_y, len(splits.classes))
    record.metrics = record.metrics.with_test(test | {"images": len(splits.test_y)})
    record.message = record.message.replace(SKIPPED_TEST_PASS, "evaluated on the full test set afterwards")
    record.timings = record.timings | {"eval_s": time.perf_counter() - t}
    store.save(record)
    return record
