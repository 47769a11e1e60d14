import json
import os
import subprocess
import sys
import time

import pytest

from core.config import TrainConfig
from core.runs.record import Metrics, RunRecord
from core.runs.store import RunStore, StoreError
from core.views.tables import results_table, runs_frame, to_markdown


def record(run_id: str, test_acc: float = 0.5, seed: int = 0, status: str = "finished") -> RunRecord:
    row = {
        "index": 1,
        "unit": "epoch",
        "train_loss": 1.0,
        "train_acc": 0.4,
        "lr": 0.1,
        "seconds": 1.0,
        "test_acc": None,
    }
    return RunRecord(
        run_id=run_id, status=status, config=TrainConfig(seed=seed), history=[row], total_units=100,
        metrics=Metrics(train_acc=0.9, test_acc=test_acc), dataset={"fingerprint": "fp"}, timings={"total_s": 3.0},
        created=time.time(),
    )  # fmt: skip


def test_record_json_round_trip_and_schema_one():
    r = record("x1", 0.25)
    back = RunRecord.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r and back.config_hash == r.config.config_hash()
    old = {  # a record as this app wrote it before the typed record (schema 1)
        "run_id": "old1", "status": "finished", "created": 1.0,
        "config": TrainConfig().to_dict() | {"method": "semi", "semi": "selftrain"},
        "history": [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.4, "progress": 0.5}],
        "metrics": {"train_acc": 1.0, "test_acc": 0.4}, "semi": {"final_count": 7},
    }  # fmt: skip
    migrated = RunRecord.from_dict(old)
    assert migrated.method == "selftrain" and migrated.unit == "round"
    assert migrated.history[0]["index"] == 1 and migrated.diagnostics["final_count"] == 7


def test_round_trip_list_find_delete(tmp_path):
    store = RunStore(tmp_path)
    store.save(record("a1", 0.3))
    store.save(record("b2", 0.6, seed=1))
    assert store.load("a1").metrics.test_acc == 0.3
    assert {r.run_id for r in store.runs()} == {"a1", "b2"}
    assert store.find(TrainConfig(seed=1), "fp").run_id == "b2"
    assert store.find(TrainConfig(seed=2), "fp") is None
    assert store.find(TrainConfig(seed=1), "other-data") is None
    store.delete("a1")
    assert [r.run_id for r in store.runs()] == ["b2"]


def test_corrupt_truncated_and_foreign_files_are_skipped_with_warnings(tmp_path):
    store = RunStore(tmp_path)
    store.save(record("good"))
    (tmp_path / "truncated.json").write_text(json.dumps(record("truncated").to_dict())[:50])
    (tmp_path / "foreign.json").write_text('{"hello": "world"}')
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    assert [r.run_id for r in store.runs()] == ["good"]
    assert len(store.warnings) == 3 and any("truncated.json" in w for w in store.warnings)


@pytest.mark.slow
def test_crash_mid_write_loses_nothing(tmp_path):
    """A child process is killed with SIGKILL while it saves runs in a loop; every finished file loads."""
    store = RunStore(tmp_path)
    for i in range(3):
        store.save(record(f"early{i}"))
    code = (
        "import sys, time; sys.path.insert(0, '.');"
        "from tests.test_store import record; from core.runs.store import RunStore;"
        f"s = RunStore({str(tmp_path)!r}); i = 0\n"
        "while True:\n"
        "    r = record(f'late{i % 5}'); r.history = r.history * 2000; s.save(r); i += 1\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(__file__)))
    time.sleep(2.5)
    child.kill()
    child.wait()
    runs = RunStore(tmp_path).runs()
    ids = {r.run_id for r in runs}
    assert {"early0", "early1", "early2"} <= ids
    assert all(r.status == "finished" for r in runs)
    assert RunStore(tmp_path).warnings == []  # a half-written temp file is never a .json


def test_ids_cannot_escape_the_runs_folder(tmp_path):
    store = RunStore(tmp_path / "runs")
    for bad in ("../evil", "a/b", "..", "", "x" * 200, ".hidden"):
        with pytest.raises(StoreError):
            store.load(bad)
        with pytest.raises(StoreError):
            store.save(record(bad))
    assert not (tmp_path / "evil.json").exists()


def test_export_import_round_trip_and_malicious_imports(tmp_path):
    a = RunStore(tmp_path / "a")
    a.save(record("r1", 0.4))
    a.save(record("r2", 0.5))
    blob = a.export_json(["r1", "r2"])
    b = RunStore(tmp_path / "b")
    assert sorted(b.import_json(blob)) == ["r1", "r2"]
    assert b.load("r2").metrics.test_acc == 0.5
    evil = json.loads(blob)
    evil["runs"][0]["run_id"] = "../../escape"
    with pytest.raises(StoreError, match="run id"):
        b.import_json(json.dumps(evil))
    with pytest.raises(StoreError, match="not JSON"):
        b.import_json(b"\x80\x04\x95pickle")
    with pytest.raises(StoreError, match="larger"):
        b.import_json(b" " * (21 * 1024 * 1024))
    bad_cfg = json.loads(blob)
    bad_cfg["runs"][1]["config"]["lr"] = "fast"
    with pytest.raises(StoreError, match="config"):
        RunStore(tmp_path / "c").import_json(json.dumps(bad_cfg))
    assert not (tmp_path / "c").exists() or RunStore(tmp_path / "c").runs() == []  # nothing half-imported


def test_tables(tmp_path):
    runs = [record("r1", 0.25), record("r2", 0.5)]
    frame = runs_frame(runs)
    assert list(frame["test_acc"]) == [0.25, 0.5] and list(frame["epochs"]) == [1, 1]
    table = results_table(runs)
    assert list(table.columns) == ["Model", "Number of epochs", "Train accuracy", "Test accuracy"]
    md = to_markdown(table)
    assert md.splitlines()[0] == "| Model | Number of epochs | Train accuracy | Test accuracy |"
    assert "| 50.0 |" in md


@pytest.mark.slow
def test_two_processes_saving_at_once_lose_nothing(tmp_path):
    code = (
        "import sys; sys.path.insert(0, '.');"
        "from tests.test_store import record; from core.runs.store import RunStore;"
        f"s = RunStore({str(tmp_path)!r})\n"
        "for i in range(25):\n"
        "    s.save(record(f'{sys.argv[1]}{i}'))\n"
    )
    root = os.path.dirname(os.path.dirname(__file__))
    procs = [subprocess.Popen([sys.executable, "-c", code, name], cwd=root) for name in ("left", "right")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = RunStore(tmp_path)
    assert len(store.runs()) == 50 and store.warnings == []
