"""Saved runs as tables: one row per run (Compare, `python -m core runs`), the notebook's results table,
and Markdown without the optional `tabulate` dependency."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

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
                "preset": c.preset,
                "augment": c.augment or "none",
                "epochs": epochs_trained(r),
                "seed": c.seed,
                "train_acc": m.train_acc,
                "test_acc": m.test_acc,
                "seconds": round(r.timings.get("total_s", 0.0), 1),
                "status": r.status,
                "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created)),
                "config_hash": r.config_hash,
            }
        )
    columns = ["run_id", "owner", "method", "model", "preset", "augment", "epochs", "seed", "train_acc",
               "test_acc", "seconds", "status", "date", "config_hash"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


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
    for _, group in frame.groupby("key", sort=False):
        test, train = group["test_acc"].dropna(), group["train_acc"].dropna()
        rows.append({"Model": group["label"].iloc[0], "Number of epochs": int(group["epochs"].max()),
                     "Train accuracy": mean_std_percent(train), "Test accuracy": mean_std_percent(test),
                     "Seeds": len(group)})  # fmt: skip
    return pd.DataFrame(rows, columns=["Model", "Number of epochs", "Train accuracy", "Test accuracy", "Seeds"])


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
