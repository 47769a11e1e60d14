"""The run record: one typed shape for every outcome (finished, stopped, diverged, failed, interrupted),
with a JSON round trip and a schema version.

`RunRecord.from_dict` reads records of every schema this project has written (schema 1 had method
"semi" with a `semi` field, rows counted by an "epoch" key, and no schema number; schema 2 had no owner,
and such runs read as the single user's, "local") and raises RecordError saying what is wrong with a
record it cannot read: files on disk and imports are untrusted.
"""

from __future__ import annotations

import re
import secrets
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from core.access import LOCAL
from core.config import ConfigError, TrainConfig

SCHEMA_VERSION = 3  # 3: the owner (core.access); older records read as "local"
STATUSES = ("finished", "stopped", "diverged", "failed", "interrupted")
UNITS = ("epoch", "round", "step")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")


class RecordError(ValueError):
    """A run record that cannot be read; the message says which field and why."""


def new_run_id(cfg: TrainConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{cfg.method}-{cfg.arch}-s{cfg.seed}-{secrets.token_hex(3)}"


@dataclass
class Metrics:
    """Accuracy on the labeled (train) and test images; empty when the run never got that far."""

    train_acc: float | None = None
    test_acc: float | None = None
    test_images: int | None = None  # how many test images test_acc was measured on
    partial: bool = False  # True: test_acc is a periodic check on a subset (a stopped run)
    per_class_acc: list[float] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    wrong_indices: list[int] = field(default_factory=list)  # the first 200 test images it got wrong
    wrong_pred: list[int] = field(default_factory=list)
    # Each fold's accuracy when the run was cross-validated (no test set: core.runs.crossval); test_acc is their
    # mean, and wrong_indices then index the labeled images.
    cv_accuracies: list[float] = field(default_factory=list)

    @property
    def cross_validated(self) -> bool:
        return bool(self.cv_accuracies)

    @property
    def cv_std(self) -> float:
        """The spread of the folds' accuracies (sample standard deviation; 0 for fewer than two)."""
        return statistics.stdev(self.cv_accuracies) if len(self.cv_accuracies) > 1 else 0.0

    def with_test(self, test: dict[str, Any]) -> Metrics:
        """These metrics with the test side replaced by `test`: core.engine.predict.metrics of the test set
        plus "images" (how many) and, for a check on a subset, "partial"."""
        return replace(
            self,
            test_acc=test["accuracy"],
            test_images=test["images"],
            partial=test.get("partial", False),
            per_class_acc=test.get("per_class_acc", []),
            confusion=test.get("confusion", []),
            wrong_indices=test.get("wrong_indices", []),
            wrong_pred=test.get("wrong_pred", []),
        )


@dataclass
class RunRecord:
    run_id: str
    status: str
    config: TrainConfig
    unit: str = "epoch"  # what one history row counts: an epoch, a self-training round, or steps
    total_units: int = 0  # how many rows a finished run has
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    message: str = ""
    dataset: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # Method-specific diagnostics, e.g. pseudo-labels per round: {"algorithm", "rounds", "final_count", ...}
    diagnostics: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    traceback: str = ""
    owner: str = LOCAL  # who made it (core.access): only they or a teacher may delete, evaluate or export it
    schema: int = SCHEMA_VERSION

    @property
    def config_hash(self) -> str:
        return self.config.config_hash()

    @property
    def method(self) -> str:
        return self.config.method

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["config"] = self.config.to_dict()
        out["config_hash"] = self.config_hash
        return out

    @classmethod
    def from_dict(cls, data: Any) -> RunRecord:
        if not isinstance(data, dict):
            raise RecordError("a run must be a JSON object")
        for key, kind in (("run_id", str), ("status", str), ("config", dict), ("metrics", dict), ("history", list)):
            if not isinstance(data.get(key), kind):
                raise RecordError(f"run field {key!r} is missing or not a {kind.__name__}")
        run_id = data["run_id"]
        if not RUN_ID.match(run_id):
            raise RecordError(f"run id {run_id!r} may hold only letters, digits, '-' and '_'")
        if data["status"] not in STATUSES:
            raise RecordError(f"run status {data['status']!r} is not one of {', '.join(STATUSES)}")
        schema = data.get("schema", 1)
        if not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise RecordError(f"run {run_id}: schema {schema!r} is newer than this app ({SCHEMA_VERSION}); update it")
        try:
            config = TrainConfig.from_dict(data["config"])
        except (ConfigError, TypeError) as err:
            raise RecordError(f"run {run_id}: bad config: {err}") from None
        m = data["metrics"]
        for key in ("train_acc", "test_acc"):
            if m.get(key) is not None and not isinstance(m[key], int | float):
                raise RecordError(f"run {run_id}: metrics.{key} must be a number")
        known_metrics = {k: m[k] for k in Metrics.__dataclass_fields__ if k in m}
        unit = data.get("unit") or _legacy_unit(data)
        if unit not in UNITS:
            raise RecordError(f"run {run_id}: unit {unit!r} is not one of {', '.join(UNITS)}")
        history = [_row(r, unit) for r in data["history"] if isinstance(r, dict)]
        owner = data.get("owner", LOCAL)
        if not isinstance(owner, str) or not 0 < len(owner) <= 80:
            raise RecordError(f"run {run_id}: owner must be a name of 1 to 80 characters")
        return cls(
            run_id=run_id,
            status=data["status"],
            config=config,
            unit=unit,
            total_units=int(data.get("total_units") or len(history)),
            history=history,
            metrics=Metrics(**known_metrics),
            message=str(data.get("message", "")),
            dataset=dict(data.get("dataset") or {}),
            env=dict(data.get("env") or {}),
            timings=dict(data.get("timings") or {}),
            diagnostics=dict(data.get("diagnostics") or data.get("semi") or {}),
            created=float(data.get("created", 0.0)),
            traceback=str(data.get("traceback", "")),
            owner=owner,
        )


def _legacy_unit(data: dict[str, Any]) -> str:
    cfg = data.get("config", {})
    return "round" if cfg.get("method") == "semi" and cfg.get("semi") in ("selftrain", "labelspread") else "epoch"


def _row(row: dict[str, Any], unit: str) -> dict[str, Any]:
    """Every history row names its unit and its 1-based index in that unit."""
    if "index" not in row:
        row = {"index": row.get("epoch", 0), "unit": unit} | {k: v for k, v in row.items() if k != "epoch"}
    return row
