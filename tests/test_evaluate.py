"""A stopped run keeps its weights; "Evaluate now" runs its full test pass later as a queued job;
one progress bar covers the epochs and the final test pass."""

import sqlite3

import pytest
import torch

from core.access import SINGLE_USER as ME
from core.config import TrainConfig
from core.engine.predict import metrics, predict
from core.jobs.progress import job_progress
from core.jobs.queue import JobInfo, JobQueue, default_queue_path
from core.jobs.worker import work
from core.models import create_model
from core.runs.evaluate import can_evaluate, evaluate_saved
from core.runs.store import RunStore, StoreError
from core.runs.train import execute
from tests.conftest import TINY

# eval_subset 12 of the 30 synthetic test images: the check before Stop is visibly partial.
CFG = TrainConfig(arch=TINY, epochs=50, batch_size=10, lr=1e-2, eval_every=1, eval_subset=12, device="cpu",
                  n_labeled=30)  # fmt: skip


def stopped_run(splits, store: RunStore, after_rows: int = 2):
    rows = []
    record = execute(CFG, splits, store, on_row=rows.append, should_stop=lambda: len(rows) >= after_rows)
    assert record.status == "stopped" and record.metrics.partial and record.metrics.test_images == 12
    return record


def test_a_stopped_run_keeps_weights_that_evaluate_to_the_full_test_set(splits, tmp_path):
    store = RunStore(tmp_path / "runs")
    record = stopped_run(splits, store)
    assert can_evaluate(store, record) and not record.metrics.confusion

    # What the kept weights predict, computed here independently of core.runs.evaluate:
    model = create_model(TINY, 3)
    model.load_state_dict(torch.load(store.weights_path(record.run_id), weights_only=True)["state"])
    expected = metrics(predict(model.eval(), splits.test_x, torch.device("cpu"), False), splits.test_y, 3)

    notes = []
    done = evaluate_saved(store, record.run_id, splits, progress=lambda f, t: notes.append(f), by=ME)
    again = store.load(record.run_id)
    assert again.metrics.test_acc == pytest.approx(expected["accuracy"]) and again.metrics.test_images == 30
    assert not again.metrics.partial and again.metrics.confusion == expected["confusion"]
    assert sum(map(sum, again.metrics.confusion)) == 30 and notes[-1] == 1.0
    assert again.status == "stopped" and again.history == record.history  # the run itself is unchanged
    assert "evaluated on the full test set afterwards" in again.message and done.metrics == again.metrics
    assert not can_evaluate(store, again)  # nothing left to offer

    store.delete(record.run_id, by=ME)
    assert not store.weights_path(record.run_id).exists()


def test_a_finished_run_keeps_no_network_unless_asked_and_a_missing_or_corrupt_file_is_named(splits, tmp_path):
    store = RunStore(tmp_path / "runs")
    finished = execute(CFG.with_(epochs=1), splits, store)
    assert finished.status == "finished" and not store.has_weights(finished.run_id)
    with pytest.raises(StoreError, match="kept no weights"):
        evaluate_saved(store, finished.run_id, splits, by=ME)
    record = stopped_run(splits, store)
    store.weights_path(record.run_id).write_bytes(b"not a torch file")
    with pytest.raises(StoreError, match="cannot be read as weights"):
        evaluate_saved(store, record.run_id, splits, by=ME)
    assert store.load(record.run_id).metrics.partial  # nothing saved is lost


def test_stop_during_an_evaluation_leaves_the_run_as_it_was(splits, tmp_path):
    store = RunStore(tmp_path / "runs")
    record = stopped_run(splits, store)
    with pytest.raises(InterruptedError):
        evaluate_saved(store, record.run_id, splits, should_stop=lambda: True, by=ME)
    assert store.load(record.run_id).metrics == record.metrics


def test_an_evaluate_job_runs_through_the_queue(dataset_dir, splits, tmp_path):
    runs = tmp_path / "runs"
    store = RunStore(runs)
    q = JobQueue(default_queue_path(runs))
    rows = []
    # A stopped run on the dataset the worker loads (same folder, so the same fingerprint).
    record = execute(CFG, splits, store, on_row=rows.append, should_stop=lambda: len(rows) >= 1)
    job_id = q.submit(record.config, str(dataset_dir), kind="evaluate", run_id=record.run_id, by=ME)
    assert work(q.path, job_id=job_id, cache_dir=tmp_path / "cache") == 1
    job = q.get(job_id)
    assert job.kind == "evaluate" and job.state == "finished" and "30 test images" in job.message
    assert job.note_fraction == 1.0 and not store.load(record.run_id).metrics.partial
    with pytest.raises(ValueError, match="only an evaluate job names a run"):
        q.submit(record.config, str(dataset_dir), kind="evaluate", by=ME)


def test_a_queue_from_before_evaluation_jobs_still_opens(tmp_path):
    path = tmp_path / "queue.sqlite"
    with sqlite3.connect(path) as db:  # the schema of the first release, without the kind column
        db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, config TEXT NOT NULL, dataset TEXT NOT "
                   "NULL, state TEXT NOT NULL DEFAULT 'queued', created REAL NOT NULL, started REAL, ended REAL, "
                   "host TEXT, pid INTEGER, heartbeat REAL, stop_requested REAL, run_id TEXT, message TEXT NOT NULL "
                   "DEFAULT '', note TEXT NOT NULL DEFAULT '', note_fraction REAL NOT NULL DEFAULT 0)")  # fmt: skip
        db.execute("INSERT INTO jobs (config, dataset, created) VALUES (?, 'data', 0)", (CFG.to_json(),))
    q = JobQueue(path)
    assert [j.kind for j in q.jobs()] == ["train"] and q.claim().cfg == CFG


def job(rows: int, seconds_per_row: float, note: str = "", note_fraction: float = 0.0) -> JobInfo:
    history = [{"index": i + 1, "unit": "epoch", "seconds": (i + 1) * seconds_per_row} for i in range(rows)]
    return JobInfo(1, CFG.with_(epochs=10), "data", "running", 0.0, history=history, note=note,
                   note_fraction=note_fraction)  # fmt: skip


def test_progress_gives_the_final_test_pass_its_share_of_the_bar_and_the_eta():
    half = job_progress(job(5, 2.0), final_pass_s=10.0)  # 10 s trained, 10 s of epochs and 10 s of test left
    assert half.eta_s == pytest.approx(20.0) and half.fraction == pytest.approx(1 / 3)
    assert "epoch 5/10" in half.text and "ETA 20 s" in half.text
    testing = job_progress(job(10, 2.0, "Final test pass: 5,000 / 10,000 images", 0.5), final_pass_s=10.0)
    assert testing.eta_s == pytest.approx(5.0) and testing.fraction == pytest.approx(25 / 30)
    assert testing.text.startswith("Final test pass")
    unknown = job_progress(job(5, 2.0), final_pass_s=None)  # no idle timing yet: no ETA rather than a wrong one
    assert unknown.eta_s is None and unknown.fraction == pytest.approx(0.5)
    features = job_progress(job(0, 0, "Extracting features: 300 / 1,000 images", 0.3), final_pass_s=0.0)
    assert features.fraction == pytest.approx(0.3) and features.text.startswith("Extracting")


def test_one_bar_from_the_start_the_estimate_gives_the_eta_before_the_first_row():
    extracting = job(0, 0, "Extracting features: 300 / 1,000 images", 0.3)
    extracting.started = 100.0
    early = job_progress(extracting, final_pass_s=5.0, estimate_s=80.0, now=120.0)  # 20 s of an 80 s estimate
    assert early.eta_s == pytest.approx(60.0) and early.fraction == pytest.approx(0.25)
    assert early.text == "Extracting features: 300 / 1,000 images · ETA ≈ 60 s"
    late = job_progress(extracting, final_pass_s=5.0, estimate_s=80.0, now=200.0)  # past it: no negative ETA
    assert late.eta_s is None and "longer than its estimate of 80 s" in late.text and late.fraction < 1
    training = job(5, 2.0)  # the features took 30 s, then 5 epochs of 2 s: 10 s of epochs and 10 s of test left
    training.started = 100.0
    rows = job_progress(training, final_pass_s=10.0, estimate_s=80.0, now=140.0)
    assert rows.eta_s == pytest.approx(20.0) and rows.fraction == pytest.approx(40 / 60)  # not back to 1/3
