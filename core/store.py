"""The run store: one JSON file per run in a runs folder (default ./runs, or $SMALLDATA_RUNS_DIR).

Why files and not SQLite: a run is written once and read whole; a JSON file per run is readable by
people, exportable as it is, and two processes saving at once write different files, so nothing
needs a lock. Writes go to a temporary file that is fsynced and then renamed over the target, so a
crash mid-write leaves either the old state or the new, never half a file. A corrupt or foreign file
is reported in `warnings` and skipped: it never breaks the listing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import ConfigError, TrainConfig

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
STATUSES = ("finished", "stopped", "diverged", "failed")
MAX_IMPORT_BYTES = 20 * 1024 * 1024
MAX_RUN_BYTES = 5 * 1024 * 1024


class StoreError(ValueError):
    """A bad run id, import file or record; the message says which and why."""


def default_runs_dir() -> Path:
    return Path(os.environ.get("SMALLDATA_RUNS_DIR", "runs"))


def new_run_id(cfg: TrainConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{cfg.method}-{cfg.arch}-s{cfg.seed}-{secrets.token_hex(3)}"


def check_record(record: Any) -> dict[str, Any]:
    """Schema check of a run record (from disk or an import): raises StoreError saying what is wrong."""
    if not isinstance(record, dict):
        raise StoreError("a run must be a JSON object")
    for key, kind in (
        ("run_id", str),
        ("status", str),
        ("config", dict),
        ("metrics", dict),
        ("history", list),
    ):
        if not isinstance(record.get(key), kind):
            raise StoreError(f"run field {key!r} is missing or not a {kind.__name__}")
    if not RUN_ID.match(record["run_id"]):
        raise StoreError(f"run id {record['run_id']!r} may hold only letters, digits, '-' and '_'")
    if record["status"] not in STATUSES:
        raise StoreError(f"run status {record['status']!r} is not one of {', '.join(STATUSES)}")
    try:
        TrainConfig.from_dict(record["config"])
    except (ConfigError, TypeError) as err:
        raise StoreError(f"run {record['run_id']}: bad config: {err}") from None
    for key in ("train_acc", "test_acc"):
        value = record["metrics"].get(key)
        if value is not None and not isinstance(value, int | float):
            raise StoreError(f"run {record['run_id']}: metrics.{key} must be a number")
    return record


@dataclass
class RunStore:
    root: Path = field(default_factory=default_runs_dir)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def _path(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise StoreError(f"invalid run id {run_id!r}")
        return self.root / f"{run_id}.json"  # the id's alphabet keeps it inside root

    def save(self, record: dict[str, Any]) -> str:
        record = check_record(record)
        path = self._path(record["run_id"])
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{record['run_id']}.{os.getpid()}.{secrets.token_hex(3)}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return record["run_id"]

    def load(self, run_id: str) -> dict[str, Any]:
        path = self._path(run_id)
        if not path.exists():
            raise StoreError(f"no run {run_id!r} in {self.root}")
        return self._read(path)

    def _read(self, path: Path) -> dict[str, Any]:
        if path.stat().st_size > MAX_RUN_BYTES:
            raise StoreError(f"{path} is larger than {MAX_RUN_BYTES >> 20} MB")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StoreError(f"{path} is not valid JSON ({err})") from None
        record = check_record(record)
        if record["run_id"] != path.stem:
            raise StoreError(f"{path} holds run {record['run_id']!r}, not {path.stem!r}")
        return record

    def runs(self) -> list[dict[str, Any]]:
        """Every readable run, newest first; unreadable files are named in self.warnings and skipped."""
        self.warnings = []
        if not self.root.is_dir():
            return []
        out = []
        for path in self.root.glob("*.json"):
            try:
                out.append(self._read(path))
            except (StoreError, OSError) as err:
                self.warnings.append(f"skipped {path.name}: {err}")
        return sorted(out, key=lambda r: r.get("created", 0), reverse=True)

    def delete(self, run_id: str) -> None:
        self._path(run_id).unlink(missing_ok=True)

    def find(self, cfg: TrainConfig, fingerprint: str) -> dict[str, Any] | None:
        """A finished run of exactly this config (seed included) on this dataset, if one is saved."""
        h = cfg.config_hash()
        for r in self.runs():
            if (
                r.get("config_hash") == h
                and r["status"] == "finished"
                and r.get("dataset", {}).get("fingerprint") == fingerprint
            ):
                return r
        return None

    # ---- export and import

    def export_json(self, run_ids: list[str]) -> str:
        return json.dumps({"smalldata_runs": 1, "runs": [self.load(i) for i in run_ids]})

    def import_json(self, data: bytes | str) -> list[str]:
        """Saves the runs of an exported file; JSON only, schema-checked, size-limited. Returns new ids."""
        if len(data) > MAX_IMPORT_BYTES:
            raise StoreError(f"import file is larger than {MAX_IMPORT_BYTES >> 20} MB")
        try:
            payload = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError):
            raise StoreError("import file is not JSON: export runs from the Compare page to get one") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("runs"), list):
            raise StoreError('import file must be an object with a "runs" list, as exported by this app')
        records = [check_record(r) for r in payload["runs"]]  # all checked before any is saved
        return [self.save(r) for r in records]


def same_test_set(record: dict[str, Any], fingerprint: str) -> bool:
    """Whether a run was evaluated on the dataset of `fingerprint` (whatever its n_labeled)."""
    theirs = record.get("dataset", {}).get("fingerprint", "")
    return bool(theirs) and theirs.rsplit("-", 1)[0] == fingerprint.rsplit("-", 1)[0]


# ---- tables


def runs_frame(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run, the columns the Compare page and the CLI show."""
    rows = []
    for r in runs:
        c, m = r["config"], r["metrics"]
        rows.append(
            {
                "run_id": r["run_id"],
                "method": c["method"],
                "model": c["arch"],
                "preset": c.get("preset", ""),
                "augment": c["augment"] or "none",
                "epochs": len(r["history"]) or c["epochs"],
                "seed": c["seed"],
                "train_acc": m.get("train_acc"),
                "test_acc": m.get("test_acc"),
                "seconds": round(r.get("timings", {}).get("total_s", 0.0), 1),
                "status": r["status"],
                "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.get("created", 0))),
                "config_hash": r.get("config_hash", ""),
            }
        )
    columns = ["run_id", "method", "model", "preset", "augment", "epochs", "seed", "train_acc",
               "test_acc", "seconds", "status", "date", "config_hash"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def results_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """The notebook's table: Model | Number of epochs | Train accuracy | Test accuracy."""
    frame = runs_frame(runs)
    label = frame["method"] + " " + frame["model"] + " " + frame["augment"]
    return pd.DataFrame(
        {
            "Model": label.str.strip(),
            "Number of epochs": frame["epochs"],
            "Train accuracy": (frame["train_acc"] * 100).round(1),
            "Test accuracy": (frame["test_acc"] * 100).round(1),
        }
    )


def to_markdown(frame: pd.DataFrame) -> str:
    """A Markdown table without the optional `tabulate` dependency."""
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = [
        "| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join([head, rule, *body])
