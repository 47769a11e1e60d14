"""An honest score without a test set: stratified k-fold cross-validation over the labeled images.

A dataset the user brought may have no test images (core.datasets). Then each fold's labeled images train
the method, with the unlabeled pool unchanged, and the fold's held-out images score it; the run's accuracy is
the folds' mean, its spread their std, and its confusion matrix pools every labeled image's out-of-fold
prediction. A last fit on all the labeled images gives the network or head that the run keeps (Try a model
uses it); it scores nothing. Frozen-feature methods pass each labeled image through the backbone once for
all the folds (core.methods.frozen.shared_features), and the unlabeled pool's features are its dataset's.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import replace

import torch

from core.config import TrainConfig, cv_fold_count
from core.data.splits import DataError, Splits
from core.methods.frozen import shared_features


def check_labels(splits: Splits) -> None:
    """Cross-validation needs every class twice (one to train on while the other is held out)."""
    counts = torch.bincount(splits.labeled_y, minlength=len(splits.classes)).tolist()
    few = [f"{name!r} has {n}" for name, n in zip(splits.classes, counts, strict=True) if n < 2]
    if few:
        raise DataError(
            f"cross-validation needs at least 2 labeled images per class, and {', '.join(few)}: label more of "
            "them, or give the dataset a test set"
        )


def stratified_folds(labels: torch.Tensor, k: int, seed: int) -> list[torch.Tensor]:
    """k disjoint index sets covering labels, each class dealt round-robin so that every fold holds about
    1/k of it; a class's deal starts where the previous one stopped, so small classes spread over folds."""
    generator = torch.Generator().manual_seed(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    dealt = 0
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        for j, i in enumerate(members[torch.randperm(len(members), generator=generator)].tolist()):
            folds[(dealt + j) % k].append(i)
        dealt += len(members)
    return [torch.tensor(sorted(f), dtype=torch.long) for f in folds if f]


def fold_splits(splits: Splits, held: torch.Tensor, name: str) -> Splits:
    """The fold that holds out `held`: the other labeled images train, `held` scores, the pool is the same."""
    keep = torch.ones(len(splits.labeled_y), dtype=torch.bool)
    keep[held] = False
    content = splits.fingerprint.rsplit("-", 1)[0]
    return replace(
        splits,
        labeled_x=splits.labeled_x[keep],
        labeled_y=splits.labeled_y[keep],
        test_x=splits.labeled_x[held],
        test_y=splits.labeled_y[held],
        fingerprint=f"{content}{name}-{int(keep.sum())}",
        pool_fingerprint=splits.unlabeled_fingerprint,
    )


FitFn = Callable[..., object]  # core.runs.train.fit, passed in: core.runs.train imports this module


def cross_validate(
    cfg: TrainConfig,
    splits: Splits,
    fit: FitFn,
    *,
    should_stop=None,
    cache_dir=None,
    progress=None,
    run_id: str | None = None,
    keep_weights=None,
):
    """The run record of cfg on a dataset without test images, scored by cfg.cv_folds-fold cross-validation."""
    check_labels(splits)
    k = cv_fold_count(cfg, len(splits.labeled_y))
    index_sets = stratified_folds(splits.labeled_y, k, cfg.seed)
    total = len(index_sets) + 1
    fold_cfg = cfg.with_(eval_every=0)  # the held-out fold is scored once, at the end of its fit

    def note(step: int, what: str) -> Callable[[float, str], None]:
        def report(fraction: float, text: str) -> None:
            if progress:
                progress((step + min(1.0, fraction)) / total, f"{what}: {text}")

        return report

    def rows_note(step: int, what: str) -> Callable[[dict], None]:
        """A fit's history rows, as notes: one bar for the whole cross-validation (core.jobs.progress)."""
        report, units, seen = note(step, what), max(1, _units(cfg)), [0]

        def on_row(row: dict) -> None:
            seen[0] += 1
            report(seen[0] / units, f"{seen[0]}/{units}")

        return on_row

    records = []
    with shared_features():
        for i, held in enumerate(index_sets):
            label = f"fold {i + 1} of {len(index_sets)}"
            fold = fold_splits(splits, held, f"cv{k}.{i}")
            record = fit(fold_cfg, fold, rows_note(i, label), should_stop, cache_dir=cache_dir,
                         progress=note(i, label))  # fmt: skip
            records.append((held, record))
            if record.status != "finished":
                break
        final = None
        if all(r.status == "finished" for _, r in records):
            whole = replace(splits, test_x=splits.labeled_x, test_y=splits.labeled_y)  # scores nothing: never shown
            last = len(index_sets)
            final = fit(fold_cfg, whole, rows_note(last, "the kept model, on every labeled image"), should_stop,
                        cache_dir=cache_dir, progress=note(last, "the kept model (scores nothing)"), run_id=run_id,
                        keep_weights=keep_weights)  # fmt: skip
    return _pooled(cfg, splits, records, final, run_id)


def _units(cfg: TrainConfig) -> int:
    from core.methods.registry import get_method

    return get_method(cfg.method).total_units(cfg)


def _pooled(cfg: TrainConfig, splits: Splits, records: list, final, run_id: str | None):
    """One record: the folds' mean accuracy and each fold's, the pooled confusion, the kept model's history."""
    held_out, last = records[-1]
    base = final if final is not None else last
    accuracies = [float(r.metrics.test_acc) for _, r in records if r.metrics.test_acc is not None]
    n = len(splits.classes)
    confusion = [[0] * n for _ in range(n)]
    wrong_indices, wrong_pred = [], []
    for held, r in records:
        for a, row in enumerate(r.metrics.confusion):
            for b, count in enumerate(row):
                confusion[a][b] += count
        wrong_indices += [int(held[i]) for i in r.metrics.wrong_indices]  # labeled image indices
        wrong_pred += list(r.metrics.wrong_pred)
    per_class = [confusion[c][c] / max(1, sum(confusion[c])) for c in range(n)]
    done = all(r.status == "finished" for _, r in records) and final is not None
    status = "finished" if done else base.status
    mean = statistics.fmean(accuracies) if accuracies else None
    metrics = replace(
        base.metrics, test_acc=mean if done else None, test_images=sum(len(h) for h, _ in records), partial=False,
        per_class_acc=per_class, confusion=confusion, wrong_indices=sorted(wrong_indices)[:200],
        wrong_pred=[p for _, p in sorted(zip(wrong_indices, wrong_pred, strict=True))][:200], cv_accuracies=accuracies,
    )  # fmt: skip
    message = f"{len(records)}-fold cross-validated accuracy {mean:.1%} ± {metrics.cv_std:.1%} (no test set)" if (
        done) else f"cross-validation stopped at fold {len(records)}: {last.message}"  # fmt: skip
    timings = {"total_s": sum(r.timings.get("total_s", 0.0) for _, r in records) + (
        final.timings.get("total_s", 0.0) if final is not None else 0.0)}  # fmt: skip
    dataset = base.dataset | {"test": 0, "cross_validated": len(records)}
    return replace(base, run_id=run_id or base.run_id, status=status, config=cfg, metrics=metrics, message=message,
                   timings=base.timings | timings, dataset=dataset)  # fmt: skip
