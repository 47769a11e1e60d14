"""The job queue (SQLite), the worker, and the supervisor that runs jobs in worker processes."""

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import torch

from core.access import SINGLE_USER as ME
from core.config import TrainConfig
from core.jobs.queue import JobQueue, QueueError, default_queue_path
from core.jobs.supervisor import Supervisor
from core.jobs.worker import work
from core.runs.store import RunStore
from core.runs.train import execute, failure_advice
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parent.parent
QUICK = dict(arch=TINY, epochs=1, batch_size=10, lr=1e-3, eval_every=0, device="cpu", n_labeled=30)
LONG = QUICK | {"epochs": 100_000 // 10, "eval_every": 1, "eval_subset": 30}


def test_queue_order_positions_claims_and_stops(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite")
    ids = [q.submit(TrainConfig(**QUICK, seed=s), "data", by=ME) for s in range(3)]
    assert [q.queue_position(i) for i in ids] == [1, 2, 3]
    first = q.claim()
    assert first.job_id == ids[0] and first.state == "running" and first.pid == os.getpid()
    assert q.claim(ids[0]) is None  # nobody takes a job twice
    assert q.request_stop(ids[1], by=ME) == "stopped" and q.queue_position(ids[2]) == 1  # left the queue
    assert q.request_stop(ids[0], by=ME) == "stopping" and q.stop_requested(ids[0])
    q.add_row(ids[0], {"index": 1, "unit": "epoch"})
    q.set_note(ids[0], 0.5, "half way")
    job = q.get(ids[0])
    assert job.history == [{"index": 1, "unit": "epoch"}] and job.note == "half way" and not job.done
    q.finish(ids[0], "stopped", "run-1", "")
    assert q.get(ids[0]).done and q.count("queued") == 1 and q.request_stop(999, by=ME) is None


def test_a_worker_runs_a_queued_job_and_saves_it(dataset_dir, tmp_path):
    runs = tmp_path / "runs"
    q = JobQueue(default_queue_path(runs))
    job_id = q.submit(TrainConfig(**QUICK | {"epochs": 3}), str(dataset_dir), by=ME)
    assert work(q.path, once=True, cache_dir=tmp_path / "cache") == 1
    job = q.get(job_id)
    assert job.state == "finished" and len(job.history) == 3 and job.run_id
    assert RunStore(runs).load(job.run_id).status == "finished"
    assert work(q.path, once=True) == 0  # nothing left


def test_a_job_whose_data_cannot_load_fails_with_the_reason(tmp_path):
    q = JobQueue(tmp_path / "runs" / "queue.sqlite")
    job_id = q.submit(TrainConfig(**QUICK), str(tmp_path / "no-such-dataset"), by=ME)
    work(q.path, once=True)
    job = q.get(job_id)
    assert job.state == "failed" and "does not exist" in job.message


def test_a_corrupt_database_is_named_and_runs_are_safe(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "keep.json").write_text("{}")
    default_queue_path(runs).write_bytes(b"this is not a database" * 100)
    with pytest.raises(QueueError, match="move queue.sqlite away"):
        JobQueue(default_queue_path(runs))
    assert (runs / "keep.json").read_text() == "{}"


def test_failures_are_saved_with_advice(splits, tmp_path, monkeypatch):
    import core.runs.train

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    store = RunStore(tmp_path / "runs")
    monkeypatch.setattr(core.runs.train, "fit", out_of_memory)
    record = execute(TrainConfig(**QUICK), splits, store)
    assert record.status == "failed" and "lower the batch size" in record.message
    assert store.load(record.run_id).status == "failed" and "OutOfMemoryError" in record.traceback


def test_failure_advice():
    assert "batch size" in failure_advice(MemoryError())
    assert "ValueError" in failure_advice(ValueError("bad"))


@pytest.fixture
def registries():
    """Makes registries and, whatever a test asserts, ends every worker they started."""
    made = []

    def make(*args, **kwargs) -> Supervisor:
        made.append(Supervisor(*args, **kwargs))
        return made[-1]

    yield make
    for reg in made:
        reg.close(kill=True)


def wait_for(predicate, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_killed_worker_is_interrupted_with_history_and_the_next_job_runs(dataset_dir, tmp_path, registries):
    reg = registries(tmp_path / "runs", str(dataset_dir), max_running=1, cache_dir=tmp_path / "cache")
    long = reg.submit(TrainConfig(**LONG), by=ME)
    short = reg.submit(TrainConfig(**QUICK), by=ME)
    assert wait_for(lambda: len(reg.get(long.job_id).history) >= 2)
    assert reg.queue_position(short.job_id) == 1 and reg.get(short.job_id).state == "queued"  # one at a time
    os.kill(reg.get(long.job_id).pid, signal.SIGKILL)  # the kernel's OOM killer, or a segfault
    assert reg.wait(timeout=90)
    dead, nxt = reg.get(long.job_id), reg.get(short.job_id)
    assert dead.state == "interrupted" and "interrupted" in dead.message
    saved = reg.store.load(dead.run_id)
    assert saved.status == "interrupted" and len(saved.history) >= 2  # the history is kept
    assert nxt.state == "finished" and reg.store.load(nxt.run_id).status == "finished"


@pytest.mark.slow
def test_a_restarted_server_runs_the_jobs_queued_before(dataset_dir, tmp_path, registries):
    before = registries(tmp_path / "runs", str(dataset_dir), start=False)  # a server that dies at once
    ids = [before.submit(TrainConfig(**QUICK, seed=s), by=ME).job_id for s in range(2)]
    assert [before.get(i).state for i in ids] == ["queued", "queued"]
    del before
    after = registries(tmp_path / "runs", str(dataset_dir), max_running=2, cache_dir=tmp_path / "cache")
    assert after.wait(timeout=120)
    assert [after.get(i).state for i in ids] == ["finished", "finished"]
    assert len(after.store.runs()) == 2
    after.close()


def test_a_claim_below_the_limit_waits_for_a_free_slot(tmp_path):
    q = JobQueue(tmp_path / "q.sqlite")
    ids = [q.submit(TrainConfig(**QUICK, seed=s), "data", by=ME) for s in range(3)]
    assert q.claim(below=1).job_id == ids[0]
    assert q.claim(below=1) is None  # one runs: a worker going on to the next job must not add a second
    assert q.claim(below=2).job_id == ids[1]
    q.finish(ids[0], "finished", None, "")
    assert q.claim(below=2).job_id == ids[2]


@pytest.mark.slow
def test_a_started_worker_goes_on_with_the_next_queued_jobs(dataset_dir, tmp_path, registries):
    """Three jobs, one at a time: the first job's worker runs all three (no second start-up), and never
    two at once."""
    reg = registries(tmp_path / "runs", str(dataset_dir), max_running=1, cache_dir=tmp_path / "cache", start=False)
    ids = [reg.submit(TrainConfig(**QUICK, seed=s), by=ME).job_id for s in range(3)]
    reg.tick()  # starts one worker, for the first job
    assert reg.wait(timeout=120)
    jobs = [reg.get(i) for i in ids]
    assert [j.state for j in jobs] == ["finished"] * 3
    assert len({j.pid for j in jobs}) == 1 and len(reg.store.runs()) == 3
    spans = sorted((j.started, j.ended) for j in jobs)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))  # one after the other


@pytest.mark.slow
def test_the_next_start_goes_to_the_worker_that_waits_for_it(dataset_dir, tmp_path, registries):
    """A worker whose jobs are done waits (WORKER_LINGER_S) for the next Start: the supervisor leaves the
    job to it instead of starting a process, which saves the next run torch's start-up."""
    reg = registries(tmp_path / "runs", str(dataset_dir), max_running=1, cache_dir=tmp_path / "cache")
    first = reg.submit(TrainConfig(**QUICK, seed=0), by=ME)
    assert reg.wait(timeout=120)
    worker = reg._procs[first.job_id]
    assert worker.poll() is None  # done with its job, and waiting
    second = reg.submit(TrainConfig(**QUICK, seed=1), by=ME)
    assert reg.wait(timeout=120)
    assert reg.get(second.job_id).state == "finished" and reg.get(second.job_id).pid == worker.pid
    assert list(reg._procs) == [first.job_id]  # no second process was started


@pytest.mark.slow
def test_stop_ends_a_running_job_which_is_saved_as_stopped(dataset_dir, tmp_path, registries):
    """How soon is the benchmark's figure (benchmarks/bench_jobs.py stop_latency); here: it stops by itself
    (the worker, not the supervisor's grace-period kill) long before its 10,000 epochs, saved as stopped."""
    reg = registries(tmp_path / "runs", str(dataset_dir), max_running=1, cache_dir=tmp_path / "cache",
                     grace_s=3600)  # fmt: skip
    job = reg.submit(TrainConfig(**LONG), by=ME)
    assert wait_for(lambda: len(reg.get(job.job_id).history) >= 1)
    assert reg.stop(job.job_id, ME) == "stopping"
    assert wait_for(lambda: reg.get(job.job_id).done, timeout=60)
    done = reg.get(job.job_id)
    saved = reg.store.load(done.run_id)
    assert done.state == saved.status == "stopped" and saved.metrics.partial
    assert "by request" in saved.message and len(saved.history) < LONG["epochs"]


@pytest.mark.slow
def test_a_worker_that_ignores_stop_is_ended_after_the_grace_period(dataset_dir, tmp_path):
    q = JobQueue(default_queue_path(tmp_path / "runs"))
    reg = Supervisor(tmp_path / "runs", str(dataset_dir), max_running=1, grace_s=1.0, start=False)
    job_id = q.submit(TrainConfig(**QUICK), str(dataset_dir), by=ME)
    q.claim(job_id)
    with sqlite3.connect(q.path) as db:  # pretend a worker (a sleeping process) holds the job
        import subprocess
        import sys

        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        db.execute("UPDATE jobs SET pid = ? WHERE id = ?", (sleeper.pid, job_id))
    q.request_stop(job_id, by=ME)
    reg.tick()  # within the grace period: the worker is left alone
    assert sleeper.poll() is None
    with sqlite3.connect(q.path) as db:  # Stop was asked 10 s ago, past the grace period of 1 s
        db.execute("UPDATE jobs SET stop_requested = stop_requested - 10 WHERE id = ?", (job_id,))
    reg.tick()  # past the grace period: the worker is killed
    assert sleeper.wait(timeout=10) == -signal.SIGKILL
    reg.tick()  # its job is saved as stopped, with what it had
    assert q.get(job_id).state == "stopped" and reg.store.load(q.get(job_id).run_id).status == "stopped"


def dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_queue_reaps_the_jobs_of_dead_workers_and_their_runs_are_saved_once(tmp_path):
    """Without any server: a claim (or a listing) ends the jobs whose worker is gone, on this host by its
    pid, elsewhere by its heartbeat, and leaves the live ones alone; a run record is written once."""
    from core.jobs.reaping import write_pending_records

    q = JobQueue(default_queue_path(tmp_path / "runs"))
    ids = [q.submit(TrainConfig(**QUICK, seed=s), "data", by=ME) for s in range(5)]
    for job_id in ids[:4]:
        q.claim(job_id)
    q.add_row(ids[0], {"index": 1, "unit": "epoch", "seconds": 1.0})
    q.request_stop(ids[1], by=ME)
    now = time.time()
    with sqlite3.connect(q.path) as db:
        db.execute("UPDATE jobs SET pid = ? WHERE id IN (?, ?)", (dead_pid(), ids[0], ids[1]))  # died here
        db.execute("UPDATE jobs SET host = 'gpu-box', heartbeat = ? WHERE id = ?", (now - 600, ids[2]))  # silent
        db.execute("UPDATE jobs SET host = 'gpu-box', heartbeat = ? WHERE id = ?", (now, ids[3]))  # beating
    assert q.claim().job_id == ids[4]  # the claim reaped first
    states = {j.job_id: j.state for j in q.jobs()}
    assert [states[i] for i in ids] == ["interrupted", "stopped", "interrupted", "running", "running"]
    assert q.reap() == []  # nothing twice
    store = RunStore(tmp_path / "runs")
    written = write_pending_records(q, store)
    assert len(written) == 3 and write_pending_records(q, store) == []  # once
    saved = store.load(q.get(ids[0]).run_id)
    assert saved.status == "interrupted" and len(saved.history) == 1 and "killed" in saved.message
    assert store.load(q.get(ids[1]).run_id).status == "stopped"


@pytest.mark.slow
def test_a_worker_killed_with_no_server_shows_interrupted_in_the_next_jobs_listing(dataset_dir, tmp_path, capsys):
    import subprocess
    import sys

    from core.cli import main

    runs = tmp_path / "runs"
    q = JobQueue(default_queue_path(runs))
    job_id = q.submit(TrainConfig(**LONG), str(dataset_dir), by=ME)
    env = os.environ | {"PYTHONPATH": str(ROOT), "SMALLDATA_CACHE_DIR": str(tmp_path / "cache")}
    worker = subprocess.Popen([sys.executable, "-m", "core", "worker", "--once", "--runs-dir", str(runs)], env=env,
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert wait_for(lambda: len(q.get(job_id).history) >= 2, timeout=120)
    finally:
        worker.kill()  # SIGKILL: nothing of the worker's own runs after this
        worker.wait()
    assert main(["jobs", "--json", "--runs-dir", str(runs)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(j["job"], j["state"]) for j in listed] == [(job_id, "interrupted")]
    q.submit(TrainConfig(**QUICK), str(dataset_dir), by=ME)
    assert work(q.path, once=True, cache_dir=tmp_path / "cache") == 1  # the next worker saves the dead one's run
    saved = RunStore(runs).load(q.get(job_id).run_id)
    assert saved.status == "interrupted" and len(saved.history) >= 2


RAY_DRIVER = """
import json, sys
from core.access import Actor
from core.config import TrainConfig
from core.jobs.supervisor import Supervisor
runs, dataset, cache, cfg = sys.argv[1:5]
reg = Supervisor(runs, dataset, cache_dir=cache, max_running=2)
ids = [reg.submit(TrainConfig.from_json(cfg).with_(seed=i), by=Actor(who)).job_id for i, who in enumerate("AB")]
finished = reg.wait(timeout=300)
import ray
nodes = [n for n in ray.nodes() if n["Alive"]]
jobs = [reg.get(i) for i in ids]
print(json.dumps({"executor": reg.executor, "finished": finished, "nodes": len(nodes), "jobs": [
    {"owner": j.owner, "state": j.state, "run_id": j.run_id, "started": j.started, "ended": j.ended,
     "rows": len(j.history), "message": j.message} for j in jobs]}))
reg.close(kill=True)
ray.shutdown()
"""


@pytest.mark.slow
def test_two_owners_jobs_run_on_a_two_node_ray_cluster(dataset_dir, tmp_path):
    """`ray start --head`, then a second `ray start --address` on this machine: two nodes with one job's CPUs
    each. The supervisor runs A's and B's jobs as Ray tasks at once, so on the two nodes, and each run is
    saved with its owner. The driver runs in a process of its own: a Ray driver's runtime outlives ray.shutdown
    in its process."""
    import subprocess
    import sys

    runs, port = tmp_path / "runs", str(free_port())
    cpus = str(max(1, (os.cpu_count() or 1) // 2))  # what one job asks for (Supervisor.threads_per_job)
    # Token authentication, as a real cluster runs it: the token every node and the driver share, given here
    # (a fresh machine has no ~/.ray/auth_token, and `ray start` does not make one).
    token = __import__("secrets").token_hex(32)
    env = os.environ | {"SMALLDATA_EXECUTOR": "ray", "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token",
                        "RAY_AUTH_TOKEN": token, "RAY_ADDRESS": f"127.0.0.1:{port}"}  # fmt: skip
    ray_start = ["ray", "start", "--num-cpus", cpus, "--disable-usage-stats"]
    try:
        subprocess.run([*ray_start, "--head", "--port", port, "--include-dashboard=false"], env=env, check=True,
                       capture_output=True, timeout=120)  # fmt: skip
        subprocess.run([*ray_start, "--address", f"127.0.0.1:{port}"], env=env, check=True, capture_output=True,
                       timeout=120)  # fmt: skip
        cfg = TrainConfig(**QUICK | {"epochs": 300}).to_json()
        out = subprocess.run([sys.executable, "-c", RAY_DRIVER, str(runs), str(dataset_dir), str(tmp_path / "c"), cfg],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=400)  # fmt: skip
    finally:
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["executor"] == "ray" and result["finished"] and result["nodes"] == 2, result
    jobs = result["jobs"]
    assert [(j["owner"], j["state"], j["rows"]) for j in jobs] == [("A", "finished", 300), ("B", "finished", 300)]
    # Both ran at once; each node has the CPUs of one job only, so they ran on different nodes.
    assert max(j["started"] for j in jobs) < min(j["ended"] for j in jobs), jobs
    assert [RunStore(runs).load(j["run_id"]).owner for j in jobs] == ["A", "B"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
