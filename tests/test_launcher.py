"""The worker launcher (core.jobs.launcher): a process with torch imported forks each worker."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from core.access import SINGLE_USER as ME
from core.config import TrainConfig
from core.jobs import launcher
from core.jobs.queue import JobQueue
from core.jobs.supervisor import Supervisor
from tests.test_jobs import LONG, QUICK, wait_for

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.slow,  # a launcher process (torch imported once for the whole suite)
    pytest.mark.skipif(not launcher.enabled(), reason="the launcher forks: Linux only; elsewhere workers are spawned"),
]


@pytest.fixture
def ready():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    launcher.start(env)
    assert wait_for(lambda: launcher.ready(), timeout=60), "no launcher answered"
    return env


def test_a_forked_worker_gets_its_own_environment_log_and_exit_status(ready, tmp_path):
    log = tmp_path / "worker.log"
    env = ready | {"SMALLDATA_PLUGINS": "no_such_plugin_module"}
    bad = launcher.launch(["worker", "--queue", str(tmp_path / "q.sqlite")], env, tmp_path, log)
    assert bad is not None
    assert bad.wait(timeout=60) != 0  # the child read the request's environment, not the launcher's
    assert "no_such_plugin_module" in log.read_text()
    good = launcher.launch(["--help"], ready, tmp_path, tmp_path / "help.log")
    assert good.wait(timeout=60) == 0 and "usage: " in (tmp_path / "help.log").read_text()
    assert good.pid != bad.pid != os.getpid()


def test_the_registry_forks_its_workers_and_they_run_the_jobs(ready, dataset_dir, tmp_path):
    reg = Supervisor(tmp_path / "runs", str(dataset_dir), max_running=1, cache_dir=tmp_path / "cache")
    try:
        job = reg.submit(TrainConfig(**QUICK), by=ME)
        handle = reg._procs[job.job_id]
        assert isinstance(handle, launcher.Launched)
        assert {"pid": handle.pid, "argv": handle_argv(handle)} in launcher.children()
        assert reg.wait(timeout=120)
        done = reg.get(job.job_id)
        assert done.state == "finished" and done.pid == handle.pid
        assert reg.store.load(done.run_id).metrics.test_acc is not None
    finally:
        reg.close(kill=True)


def handle_argv(handle: launcher.Launched) -> list[str]:
    return next(c["argv"] for c in launcher.children() if c["pid"] == handle.pid)


def test_a_worker_outlives_its_launcher_and_its_end_is_still_seen(ready, dataset_dir, tmp_path, monkeypatch):
    """The launcher may end (idle, killed) while a worker trains: the worker goes on and the server
    still sees it end. A launcher of this test's own, so the suite's is left alone."""
    monkeypatch.setenv("SMALLDATA_LAUNCHER_DIR", str(tmp_path / "own"))
    env = ready | {"SMALLDATA_LAUNCHER_DIR": str(tmp_path / "own")}
    launcher.start(env)
    assert wait_for(lambda: launcher.ready(), timeout=60)
    queue = JobQueue(tmp_path / "q.sqlite")
    job_id = queue.submit(TrainConfig(**LONG), str(dataset_dir), by=ME)
    worker = launcher.launch(
        ["worker", "--queue", str(queue.path), "--job", str(job_id)], env, tmp_path, tmp_path / "w.log"
    )
    assert wait_for(lambda: len(queue.get(job_id).history) >= 1)  # training
    launcher.stop()
    assert wait_for(lambda: not launcher.ready(), timeout=10)
    assert launcher.launch(["--help"], env, tmp_path, tmp_path / "b.log") is None  # the server spawns instead
    n = len(queue.get(job_id).history)
    assert worker.poll() is None and wait_for(lambda: len(queue.get(job_id).history) > n)  # it trains on
    queue.request_stop(job_id, by=ME)
    assert wait_for(lambda: worker.poll() is not None, timeout=30)  # its end is seen without the launcher
    assert queue.get(job_id).state == "stopped"


def test_with_the_launcher_off_workers_are_plain_processes(monkeypatch, dataset_dir, tmp_path):
    monkeypatch.setenv("SMALLDATA_LAUNCHER", "off")
    assert launcher.launch(["--help"], {}, tmp_path, tmp_path / "x.log") is None
    reg = Supervisor(tmp_path / "runs", str(dataset_dir), max_running=1, cache_dir=tmp_path / "cache")
    try:
        job = reg.submit(TrainConfig(**QUICK), by=ME)
        assert isinstance(reg._procs[job.job_id], subprocess.Popen)
        assert reg.wait(timeout=120) and reg.get(job.job_id).state == "finished"
    finally:
        reg.close(kill=True)


def test_a_dead_launcher_leaves_poll_to_the_pid(ready, tmp_path):
    """EOF on the connection without an exit status: the child counts as running while its pid lives."""
    import socket

    a, b = socket.socketpair()
    child = os.fork()
    if child == 0:
        time.sleep(1.0)
        os._exit(0)
    handle = launcher.Launched(child, a)
    b.close()  # the launcher is gone
    assert handle.poll() is None  # the pid still lives
    os.waitpid(child, 0)
    assert wait_for(lambda: handle.poll() is not None, timeout=5) and handle.returncode == -signal.SIGKILL
