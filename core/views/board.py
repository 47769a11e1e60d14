"""The class board: every recipe the class ran, pooled over all students' seeds. With 100 labels one run is
noise; thirty students running one recipe with thirty seeds is the best "many seeds" experiment there is.

A recipe is a run's experiment with the seed left out (core.methods.registry.experiment_hash): the CLI's and
the app's spellings of one recipe pool together. Only finished runs with a full test pass count: a stopped
run's accuracy is a check on a subset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.config import ConfigError, TrainConfig
from core.methods.registry import experiment_hash
from core.runs.record import RunRecord

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["recipe", "method", "students", "runs", "mean", "std", "best", "best_by", "key"]


def recipe_key(cfg: TrainConfig, fingerprint: str) -> str:
    try:
        return experiment_hash(cfg.with_(seed=0), fingerprint)
    except ConfigError:  # a method of a plug-in not loaded here: its own spelling
        return cfg.with_(seed=0).config_hash()


def recipe_label(cfg: TrainConfig) -> str:
    extra = f" {cfg.resolution}px" if cfg.weights else ""
    return (f"{cfg.method} · {cfg.preset} · {cfg.arch}{extra} · {cfg.augment or 'no augmentation'} · "
            f"{cfg.epochs} ep · lr {cfg.lr:g}")  # fmt: skip


def pooled_runs(runs: list[RunRecord], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per counted run: recipe key and label, owner, seed, test accuracy. `labels` names pinned
    recipes by key (a lesson's "Scratch (notebook)")."""
    import pandas as pd

    labels = labels or {}
    rows = []
    for r in runs:
        m = r.metrics
        if r.status != "finished" or m.test_acc is None or m.partial:
            continue
        key = recipe_key(r.config, r.dataset.get("fingerprint", ""))
        rows.append({"key": key, "recipe": labels.get(key, recipe_label(r.config)), "method": r.config.method,
                     "owner": r.owner, "seed": r.config.seed, "test_acc": m.test_acc, "run_id": r.run_id})  # fmt: skip
    frame = pd.DataFrame(rows, columns=["key", "recipe", "method", "owner", "seed", "test_acc", "run_id"])
    return distinct_labels(frame, "recipe")


def distinct_labels(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """Two recipes (column "key") that differ only in a field the label leaves out must not share a label,
    or their runs would be pooled as one: such labels get the key's first characters."""
    if not frame.empty:
        keys_per_label = frame.groupby(label)["key"].transform("nunique")
        frame.loc[keys_per_label > 1, label] += " · " + frame["key"].str[:6]
    return frame


def board(per_run: pd.DataFrame) -> pd.DataFrame:
    """One row per recipe: how many students and runs, mean and std (over runs, ddof 1) of the test accuracy,
    the best run and who made it. Sorted by mean, best first."""
    import pandas as pd

    rows = []
    for key, group in per_run.groupby("key", sort=False):
        best = group.loc[group["test_acc"].idxmax()]
        rows.append({"recipe": group["recipe"].iloc[0], "method": group["method"].iloc[0],
                     "students": group["owner"].nunique(), "runs": len(group), "mean": group["test_acc"].mean(),
                     "std": group["test_acc"].std(ddof=1) if len(group) > 1 else float("nan"),
                     "best": best["test_acc"], "best_by": best["owner"], "key": key})  # fmt: skip
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values("mean", ascending=False, ignore_index=True)


def board_export(frame: pd.DataFrame) -> pd.DataFrame:
    """The board as people read it: accuracies in percent with one decimal, mean ± std in one column."""
    import pandas as pd

    def pct(v: float) -> str:
        return "" if pd.isna(v) else f"{v:.1%}"

    return pd.DataFrame({
        "Recipe": frame["recipe"], "Students": frame["students"], "Runs": frame["runs"],
        "Test accuracy (mean ± std)": [f"{pct(m)} ± {pct(s)}" if not pd.isna(s) else f"{pct(m)} (1 run)"
                                       for m, s in zip(frame["mean"], frame["std"], strict=True)],
        "Best": frame["best"].map(pct), "Best by": frame["best_by"],
    })  # fmt: skip
