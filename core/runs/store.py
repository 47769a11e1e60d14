"""The run store: one JSON file per run in a runs folder (default ./runs, or $SMALLDATA_RUNS_DIR).

Why files and not SQLite: a run is written once and read whole; a JSON file per run is readable by
people, exportable as it is, and two processes saving at once write different files, so nothing
needs a lock. Writes go to a temporary file that is fsynced and then renamed over the target, so a
crash mid-write leaves either the old state or the new, never half a file. A corrupt or foreign file
is reported in `warnings` and skipped: it never breaks the listing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch

from core import settings
from core.access import Actor, PermissionDenied, check
from core.config import ConfigError, TrainConfig
from core.methods.registry import experiment_hash
from core.runs.record import RUN_ID, RecordError, RunRecord

MAX_IMPORT_BYTES = 20 * 1024 * 1024
MAX_ARCHIVE_BYTES = 200 * 1024 * 1024  # Streamlit's own upload limit: whole networks are 10-45 MB each
MAX_RUN_BYTES = 5 * 1024 * 1024


class StoreError(ValueError):
    """A bad run id, import file or record; the message says which and why."""


WEIGHT_KINDS = ("head", "network")


@dataclass(frozen=True)
class KeptWeights:
    kind: str  # head | network
    state: dict[str, torch.Tensor]


def read_weights(data: bytes) -> KeptWeights:
    """Kept weights from bytes, with weights_only=True (never unpickles code). Files from before the
    kinds existed hold a bare state_dict: a whole network."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise StoreError(f"cannot be read as weights ({type(err).__name__})") from None
    if isinstance(payload, dict) and payload.get("kind") in WEIGHT_KINDS and isinstance(payload.get("state"), dict):
        return KeptWeights(payload["kind"], payload["state"])
    if isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return KeptWeights("network", payload)
    raise StoreError("holds no state_dict")


def default_runs_dir() -> Path:
    return settings.current().runs_dir


def check_record(data: Any) -> RunRecord:
    """A record from disk or an import, read and checked: raises StoreError saying what is wrong."""
    try:
        return RunRecord.from_dict(data)
    except RecordError as err:
        raise StoreError(str(err)) from None


@dataclass
class RunStore:
    root: Path = field(default_factory=default_runs_dir)
    warnings: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # of the last import: the runs that were saved here before

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def record_path(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise StoreError(f"invalid run id {run_id!r}")
        return self.root / f"{run_id}.json"  # the id's alphabet keeps it inside root

    def save(self, record: RunRecord) -> str:
        text = json.dumps(record.to_dict(), allow_nan=False).encode("utf-8")
        self._write_atomically(self.record_path(record.run_id), lambda f: f.write(text))
        return record.run_id

    def _write_atomically(self, path: Path, write: Callable[[BinaryIO], object]) -> None:
        """A temporary file beside `path`, fsynced, then renamed over it: a crash leaves the old file or the new."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp"
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load(self, run_id: str) -> RunRecord:
        path = self.record_path(run_id)
        if not path.exists():
            raise StoreError(f"no run {run_id!r} in the runs folder")
        return self._read(path)

    def _read(self, path: Path) -> RunRecord:
        if path.stat().st_size > MAX_RUN_BYTES:
            raise StoreError(f"{path} is larger than {MAX_RUN_BYTES >> 20} MB")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StoreError(f"{path} is not valid JSON ({err})") from None
        record = check_record(record)
        if record.run_id != path.stem:
            raise StoreError(f"{path} holds run {record.run_id!r}, not {path.stem!r}")
        return record

    def runs(self) -> list[RunRecord]:
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
        return sorted(out, key=lambda r: r.created, reverse=True)

    def delete(self, run_id: str, *, by: Actor) -> None:
        """Deletes a run and its weights; only its owner or a teacher may (PermissionDenied)."""
        if self.record_path(run_id).exists():
            try:
                self.check(run_id, by, "delete")
            except StoreError:  # unreadable: whose it is cannot be told
                if not by.teacher:
                    raise PermissionDenied(f"run {run_id} cannot be read: only a teacher can delete it") from None
        self.record_path(run_id).unlink(missing_ok=True)
        self.weights_path(run_id).unlink(missing_ok=True)

    def check(self, run_id: str, by: Actor, action: str) -> RunRecord:
        """The run, when `by` may `action` it (its owner, or a teacher); PermissionDenied otherwise."""
        record = self.load(run_id)
        check(by, record.owner, action, f"run {run_id}")
        return record

    def delete_owner(self, owner: str, *, by: Actor) -> list[str]:
        """Deletes every run of `owner` (a teacher removing a student's runs); returns their ids."""
        doomed = [r.run_id for r in self.runs() if r.owner == owner]
        for run_id in doomed:
            self.delete(run_id, by=by)
        return doomed

    # ---- weights kept beside a record: what the run needs to predict (core.runs.inference), or to be
    # evaluated later (a stopped run). kind "head": a linear head on frozen features (kilobytes; the
    # backbone comes from the config's pretrained weights); kind "network": the whole state_dict.

    def weights_path(self, run_id: str) -> Path:
        return self.record_path(run_id).with_suffix(".pt")

    def has_weights(self, run_id: str) -> bool:
        return self.weights_path(run_id).is_file()

    def weights_bytes(self, run_id: str) -> int:
        path = self.weights_path(run_id)
        return path.stat().st_size if path.is_file() else 0

    def save_weights(self, run_id: str, state: dict[str, Any], kind: str = "network") -> Path:
        """A state_dict beside the run's record, written as atomically as the record."""
        if kind not in WEIGHT_KINDS:
            raise StoreError(f"weights kind must be one of {WEIGHT_KINDS}, not {kind!r}")
        payload = {"kind": kind, "state": {k: v.detach().cpu() for k, v in state.items()}}
        path = self.weights_path(run_id)
        self._write_atomically(path, lambda f: torch.save(payload, f))
        return path

    def weights_kind(self, run_id: str) -> str | None:
        """ "head", "network", or None (none kept, or unreadable), without reading the tensors (mmap)."""
        path = self.weights_path(run_id)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:
            return None
        return payload.get("kind", "network") if isinstance(payload, dict) else None

    def load_weights(self, run_id: str) -> KeptWeights:
        path = self.weights_path(run_id)
        if not path.is_file():
            raise StoreError(f"run {run_id!r} kept no weights ({path.name} is missing)")
        try:
            return read_weights(path.read_bytes())
        except StoreError as err:
            raise StoreError(f"{path}: {err}: delete it") from None

    def find(self, cfg: TrainConfig, fingerprint: str) -> RunRecord | None:
        """A finished run of this experiment (seed included) on this dataset, if one is saved: the fields
        the method reads decide (core.methods.registry.experiment_hash), so the CLI's and the app's spellings
        of one experiment find each other, and so do runs saved before configs were canonical."""
        wanted = experiment_hash(cfg, fingerprint)
        for r in self.runs():
            if r.status != "finished" or r.dataset.get("fingerprint") != fingerprint:
                continue
            try:
                if experiment_hash(r.config, fingerprint) == wanted:
                    return r
            except ConfigError:  # a method this process does not know (a plug-in not loaded)
                continue
        return None

    # ---- export and import

    def export_json(self, run_ids: list[str], *, by: Actor) -> str:
        """The runs as one JSON file; only their owner or a teacher may export them (PermissionDenied)."""
        return json.dumps({"smalldata_runs": 1, "runs": [self.check(i, by, "export").to_dict() for i in run_ids]})

    def export_archive(self, run_ids: list[str], *, by: Actor) -> bytes:
        """A zip of runs.json (as export_json) and weights/RUN_ID.pt for every run that kept weights."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("runs.json", self.export_json(run_ids, by=by))
            for run_id in run_ids:
                if self.has_weights(run_id):
                    z.write(self.weights_path(run_id), f"weights/{run_id}.pt")
        return buf.getvalue()

    def import_file(self, data: bytes, *, by: Actor) -> list[str]:
        """An exported .json or .zip: every record and every weights file is checked before any is saved.
        A student's import is theirs (the records' owners are rewritten); a teacher's keeps its owners. A run
        id that is saved already and belongs to someone `by` may not change refuses the whole import."""
        if data[:4] != b"PK\x03\x04":
            return self.import_json(data, by=by)
        if len(data) > MAX_ARCHIVE_BYTES:
            raise StoreError(f"import archive is larger than {MAX_ARCHIVE_BYTES >> 20} MB")
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                members = {m.filename: m for m in z.infolist()}
                if "runs.json" not in members:
                    raise StoreError("import archive has no runs.json: export runs from the Compare page to get one")
                if sum(m.file_size for m in members.values()) > MAX_ARCHIVE_BYTES:  # a zip bomb
                    raise StoreError(f"import archive unpacks to more than {MAX_ARCHIVE_BYTES >> 20} MB")
                records = self._checked_records(z.read("runs.json"), by)
                ids = {r.run_id for r in records}
                weights = {}
                for name in members:
                    if name == "runs.json":
                        continue
                    run_id = name.removeprefix("weights/").removesuffix(".pt")
                    if not name.startswith("weights/") or run_id not in ids:
                        raise StoreError(f"import archive holds {name!r}, which is no run's weights")
                    try:
                        kept = read_weights(z.read(name))
                    except StoreError as err:
                        raise StoreError(f"import archive: {name} {err}") from None
                    weights[run_id] = kept
        except zipfile.BadZipFile as err:
            raise StoreError(f"import archive is not a readable zip ({err})") from None
        saved = [self.save(r) for r in records]
        for run_id, kept in weights.items():
            self.save_weights(run_id, kept.state, kept.kind)
        return saved

    def import_json(self, data: bytes | str, *, by: Actor) -> list[str]:
        """Saves the runs of an exported file; JSON only, schema-checked, size-limited. Returns their ids."""
        return [self.save(r) for r in self._checked_records(data, by)]

    def _checked_records(self, data: bytes | str, by: Actor) -> list[RunRecord]:
        if len(data) > MAX_IMPORT_BYTES:
            raise StoreError(f"import file is larger than {MAX_IMPORT_BYTES >> 20} MB")
        try:
            payload = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError):
            raise StoreError("import file is not JSON: export runs from the Compare page to get one") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("runs"), list):
            raise StoreError('import file must be an object with a "runs" list, as exported by this app')
        records = [check_record(r) for r in payload["runs"]]  # all checked before any is saved
        self.already = [r.run_id for r in records if self.record_path(r.run_id).exists()]
        for record in records:
            if not by.teacher:
                record.owner = by.name
            if record.run_id in self.already:
                with contextlib.suppress(StoreError):  # unreadable: the import may replace it
                    self.check(record.run_id, by, "replace")
        return records


def same_test_set(record: RunRecord, fingerprint: str) -> bool:
    """Whether a run was evaluated on the dataset of `fingerprint` (whatever its n_labeled)."""
    theirs = record.dataset.get("fingerprint", "")
    return bool(theirs) and theirs.rsplit("-", 1)[0] == fingerprint.rsplit("-", 1)[0]


# ---- tables
