import json
import os
import subprocess
import sys
import time

import pytest

from core.access import SINGLE_USER as ME
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
    store.delete("a1", by=ME)
    assert [r.run_id for r in store.runs()] == ["b2"]


def test_corrupt_truncated_and_foreign_files_are_skipped_with_warnings(tmp_path):
    store = RunStore(tmp_path)
    store.save(record("good"))
    (tmp_path / "truncated.json").write_text(json.dumps(record("truncated").to_dict())[:50])
    (tmp_path / "foreign.json").write_text('{"hello": "world"}')
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    assert [r.run_id for r in store.runs()] == ["good"]
    assert len(store.warnings) == 3 and any("truncated.json" in w for w in store.warnings)


# Rewrites one saved run through the store's own writer, in small slow pieces, and says (a marker file)
# when it is half way: the parent then kills it in the middle of the write, not between two writes.
SLOW_REWRITE = (
    "import json, sys, time; from pathlib import Path; sys.path.insert(0, '.');"
    "from tests.test_store import record; from core.runs.store import RunStore;"
    "s = RunStore(sys.argv[1]); names = sys.argv[2].split(','); marker = sys.argv[4]\n"
    "def slowly(text):\n"
    "    def write(f):\n"
    "        for i in range(0, len(text), 4096):\n"
    "            f.write(text[i:i + 4096]); f.flush()\n"
    "            if marker and i >= len(text) // 2: Path(marker).touch()\n"
    "            time.sleep(0.002)\n"
    "    return write\n"
    "for i in range(int(sys.argv[3])):\n"
    "    r = record(names[i % len(names)], test_acc=0.9); r.history = r.history * 4000\n"
    "    s._write_atomically(s.record_path(r.run_id), slowly(json.dumps(r.to_dict()).encode()))\n"
)


def slow_rewriter(root, names: list[str], times: int, marker: str = "") -> subprocess.Popen:
    """A child that rewrites saved runs through the store's own writer, in small slow pieces (each write
    takes about half a second), so that a kill or a reader lands inside a write, not between two."""
    cwd = os.path.dirname(os.path.dirname(__file__))
    args = [sys.executable, "-c", SLOW_REWRITE, str(root), ",".join(names), str(times), marker]
    return subprocess.Popen(args, cwd=cwd)


@pytest.mark.slow
def test_crash_mid_write_loses_nothing(tmp_path):
    """A child is killed with SIGKILL half way through rewriting a saved run: the run is still whole, as it
    was (a writer that writes in place leaves it truncated, and this test fails)."""
    store = RunStore(tmp_path / "runs")
    store.save(record("kept", test_acc=0.25))
    marker = tmp_path / "half-way"
    child = slow_rewriter(store.root, ["kept"], 1, str(marker))
    deadline = time.time() + 60
    while not marker.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert marker.exists(), "the child never got half way"
    child.kill()
    child.wait()
    after = RunStore(store.root)
    assert [r.run_id for r in after.runs()] == ["kept"] and after.warnings == []
    assert after.load("kept").metrics.test_acc == 0.25  # the old version, whole


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
    blob = a.export_json(["r1", "r2"], by=ME)
    b = RunStore(tmp_path / "b")
    assert sorted(b.import_json(blob, by=ME)) == ["r1", "r2"]
    assert b.load("r2").metrics.test_acc == 0.5
    evil = json.loads(blob)
    evil["runs"][0]["run_id"] = "../../escape"
    with pytest.raises(StoreError, match="run id"):
        b.import_json(json.dumps(evil), by=ME)
    with pytest.raises(StoreError, match="not JSON"):
        b.import_json(b"\x80\x04\x95pickle", by=ME)
    with pytest.raises(StoreError, match="larger"):
        b.import_json(b" " * (21 * 1024 * 1024), by=ME)
    bad_cfg = json.loads(blob)
    bad_cfg["runs"][1]["config"]["lr"] = "fast"
    with pytest.raises(StoreError, match="config"):
        RunStore(tmp_path / "c").import_json(json.dumps(bad_cfg), by=ME)
    assert not (tmp_path / "c").exists() or RunStore(tmp_path / "c").runs() == []  # nothing half-imported


def test_tables(tmp_path):
    runs = [record("r1", 0.25), record("r2", 0.5)]
    frame = runs_frame(runs)
    assert list(frame["test_acc"]) == [0.25, 0.5] and list(frame["epochs"]) == [1, 1]
    table = results_table(runs)  # one recipe, two runs: one row, mean ± std over them
    assert list(table.columns) == ["Model", "Number of epochs", "Train accuracy", "Test accuracy", "Seeds"]
    assert len(table) == 1 and table["Test accuracy"].iloc[0] == "37.5% ± 17.7%" and table["Seeds"].iloc[0] == 2
    md = to_markdown(table)
    assert md.splitlines()[0] == "| Model | Number of epochs | Train accuracy | Test accuracy | Seeds |"
    other = record("r3", 0.51)
    other.config = other.config.with_(lr=other.config.lr / 2)
    assert list(results_table([other])["Test accuracy"]) == ["51.0%"]  # one decimal always


@pytest.mark.slow
def test_two_processes_saving_the_same_runs_at_once_lose_nothing(tmp_path):
    """Two writers rewrite the same two runs while this process reads them: every read finds each run
    whole (an in-place writer lets a reader see half a file, or two writers' bytes interleaved)."""
    names = ["shared0", "shared1"]
    RunStore(tmp_path).save(record("other"))
    writers = [slow_rewriter(tmp_path, names, times=2) for _ in range(2)]
    reads, broken = 0, []
    while any(w.poll() is None for w in writers):
        store = RunStore(tmp_path)
        reads += len(store.runs())
        broken += store.warnings
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    assert broken == [] and reads > 0
    final = RunStore(tmp_path)
    assert sorted(r.run_id for r in final.runs()) == ["other", *names] and final.warnings == []
    assert all(r.metrics.test_acc == 0.9 for r in final.runs() if r.run_id != "other")  # each one rewritten


def test_a_run_that_changed_its_preset_is_not_labelled_as_the_preset():
    from core.methods.registry import preset
    from core.views.tables import preset_label

    recommended = preset("scratch", "recommended")
    assert preset_label(recommended.with_(seed=4, eval_every=0)) == "recommended"  # per-run fields do not count
    assert preset_label(recommended.with_(epochs=60)) == "recommended, epochs changed"
    assert preset_label(recommended.with_(epochs=60, lr=0.5, momentum=0.5)) == "recommended, epochs, lr ... changed"
    assert preset_label(recommended.with_(preset="")) == "custom"
