"""Saved runs as tables: one row per run (Compare, `python -m core runs`), the notebook's results table,
and Markdown without the optional `tabulate` dependency."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from core.config import TrainConfig
from core.methods.registry import changed_from_preset
from core.runs.record import RunRecord
from core.views.board import distinct_labels, recipe_key

if TYPE_CHECKING:
    import pandas as pd


def runs_frame(runs: list[RunRecord]) -> pd.DataFrame:
    """One row per run, the columns the Compare page and the CLI show."""
    import pandas as pd  # here, not at the top: a worker saves runs and never needs pandas (4 s to import)

    rows = []
    for r in runs:
        c, m = r.config, r.metrics
        rows.append(
            {
                "run_id": r.run_id,
                "owner": r.owner,
                "method": c.method,
                "model": c.arch,
                "preset": preset_label(c),
                "augment": c.augment or "none",
                "epochs": epochs_trained(r),
                "seed": c.seed,
                "train_acc": m.train_acc,
                "test_acc": m.test_acc,
                "seconds": round(r.timings.get("total_s", 0.0), 1),
                "status": r.status,
                "dataset": dataset_name(r),
                "scored_by": scored_by(r),
                "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created)),
                "config_hash": r.config_hash,
            }
        )
    columns = ["run_id", "owner", "method", "model", "preset", "augment", "epochs", "seed", "train_acc",
               "test_acc", "seconds", "status", "dataset", "scored_by", "date", "config_hash"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def preset_label(cfg: TrainConfig) -> str:
    """A run's preset as a table names it: "recommended, epochs changed" when the run is not the preset."""
    changed = changed_from_preset(cfg)
    if not changed:
        return cfg.preset or "custom"
    return f"{cfg.preset}, {', '.join(changed[:2])}{' ...' if len(changed) > 2 else ''} changed"


def dataset_name(r: RunRecord) -> str:
    """The dataset a run was made on, by name (never its folder: a class sees no server path)."""
    source = str(r.dataset.get("source", ""))
    return str(r.dataset.get("name") or ("cifar10" if source == "cifar10" else source.rstrip("/").rsplit("/", 1)[-1]))


def score_text(r: RunRecord) -> str:
    """A run's score in words: on how many test images, or over how many folds (no test set)."""
    m = r.metrics
    if m.cross_validated:
        return f"cross-validated {m.test_acc or 0:.1%} ± {m.cv_std:.1%} ({len(m.cv_accuracies)} folds, no test set)"
    return f"test {m.test_acc or 0:.1%} ({m.test_images or r.dataset.get('test', 0)} images)"


def scored_by(r: RunRecord) -> str:
    folds = len(r.metrics.cv_accuracies)
    return f"{folds}-fold cross-validation" if folds else "test set"


def epochs_trained(r: RunRecord) -> int:
    """Epochs a run trained (a self-training run's head trains cfg.epochs per round)."""
    done = len(r.history)
    if r.unit == "round":
        return r.config.epochs * done if done else r.config.epochs
    return done or r.config.epochs


def results_table(runs: list[RunRecord]) -> pd.DataFrame:
    """The notebook's table, one row per recipe (runs that differ only by seed pooled): Model | Number of
    epochs | Train accuracy | Test accuracy (mean ± std over the seeds) | Seeds; percentages with one decimal."""
    import pandas as pd

    frame = runs_frame(runs)
    frame["label"] = (frame["method"] + " " + frame["model"] + " " + frame["augment"]).str.strip()
    frame["key"] = [recipe_key(r.config, r.dataset.get("fingerprint", "")) for r in runs]
    frame = distinct_labels(frame, "label")
    rows = []
    by_id = {r.run_id: r for r in runs}
    for _, group in frame.groupby("key", sort=False):
        test, train = group["test_acc"].dropna(), group["train_acc"].dropna()
        accuracy = mean_std_percent(test)
        folds = by_id[group["run_id"].iloc[0]].metrics.cv_accuracies
        if len(group) == 1 and len(folds) > 1:  # one seed: the spread over its folds
            accuracy = mean_std_percent(pd.Series(folds)) + " over folds"
        rows.append({"Model": group["label"].iloc[0], "Dataset": group["dataset"].iloc[0],
                     "Number of epochs": int(group["epochs"].max()), "Train accuracy": mean_std_percent(train),
                     "Test accuracy": accuracy, "Scored by": group["scored_by"].iloc[0],
                     "Seeds": len(group)})  # fmt: skip
    columns = ["Model", "Dataset", "Number of epochs", "Train accuracy", "Test accuracy", "Scored by", "Seeds"]
    table = pd.DataFrame(rows, columns=columns)
    # The notebook's own table where every run is of one dataset, scored on its test set.
    if table["Dataset"].nunique() <= 1 and set(table["Scored by"]) <= {"test set"}:
        table = table.drop(columns=["Dataset", "Scored by"])
    return table


def mean_std_percent(values: pd.Series, one: str = "") -> str:
    """A mean (± std over two or more) in percent with one decimal: "51.0%" (and `one` after a single
    value), "51.0% ± 0.4%"."""
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.1%}{one}"
    return f"{values.mean():.1%} ± {values.std(ddof=1):.1%}"


def to_markdown(frame: pd.DataFrame) -> str:
    """A Markdown table without the optional `tabulate` dependency."""
    import pandas as pd

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = [
        "| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join([head, rule, *body])
