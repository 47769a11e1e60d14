"""`Supervisor` runs the jobs of the SQLite queue (core.jobs.queue) in worker processes (core.jobs.worker),
or as Ray tasks.

The server never trains: it queues, reads progress and asks for stops. At most `max_running` jobs
train at once (default one), each worker with its share of the cores; the rest wait, in the fair order
across owners of core.jobs.schedule. A monitor thread starts workers as jobs arrive, has the queue reap the
jobs of dead workers (as every process that uses the queue does) and saves their runs, and ends a worker that
ignores Stop for longer than a grace period.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from core import settings
from core.access import Actor
from core.config import TrainConfig
from core.datasets.library import DatasetLibrary
from core.jobs import launcher
from core.jobs.launcher import pid_alive
from core.jobs.queue import JobInfo, JobQueue, default_queue_path
from core.jobs.reaping import write_pending_records
from core.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
WAIT_POLL_S = 0.5  # how often wait() looks: a run's end is seen within half a second
# How long a worker waits for a next job once its own are done: a Start, "Run again" or "Evaluate now"
# within this time skips the ~4.5 s of starting torch and torchvision in a new process.


class Supervisor:
    """The app's (or a script's) view of the job queue, and the supervisor of its workers."""

    def __init__(
        self,
        runs_dir: Path,
        dataset: str,
        *,
        max_running: int = 1,
        cache_dir: Path | None = None,
        executor: str | None = None,
        grace_s: float = 5.0,
        start: bool = True,
        tick_s: float = 0.5,
    ) -> None:
        self.runs_dir = Path(runs_dir)
        self.queue = JobQueue(default_queue_path(self.runs_dir))
        self.store = RunStore(self.runs_dir)
        self.dataset = dataset
        self.max_running = max(1, max_running)
        self.cache_dir = cache_dir
        self.executor = executor or settings.current().executor
        self.grace_s = grace_s
        self._procs: dict[int, subprocess.Popen | launcher.Launched] = {}  # job id -> the worker started for it
        self._refs: dict[int, Any] = {}  # job id -> its Ray task
        self._lock = threading.RLock()
        self._closed = threading.Event()
        if start:
            if self.executor == "process":
                launcher.start(self._worker_env())  # ready for the first Start, about 5 s from now
            self.tick()
            threading.Thread(target=self._monitor, args=(tick_s,), daemon=True, name="job-monitor").start()

    # ---- what the pages and the CLI call

    def submit(
        self, cfg: TrainConfig, *, by: Actor, kind: str = "train", run_id: str | None = None,
        request: dict | None = None, dataset: str | None = None,
    ) -> JobInfo:  # fmt: skip
        """Queues a job owned by `by` on `dataset` (default: the server's); PermissionDenied past the class's limit
        of waiting jobs, or for a dataset brought by someone else and not shared (core.datasets.library)."""
        dataset = dataset or self.dataset
        uploaded_dataset(dataset, by)
        job_id = self.queue.submit(cfg, dataset, by=by, kind=kind, run_id=run_id, request=request)
        if not self._closed.is_set():
            self.tick()
        return self.queue.get(job_id)

    def evaluate(self, run_id: str, *, by: Actor) -> JobInfo:
        """Queues the full test pass of a saved run (core.runs.evaluate), like any other job; only for the run's
        owner or a teacher (PermissionDenied). The worker checks again."""
        record = self.store.check(run_id, by, "evaluate")
        return self.submit(record.config, by=by, kind="evaluate", run_id=run_id,
                           dataset=str(record.dataset.get("source") or self.dataset))  # fmt: skip

    def jobs(self, limit: int = 50) -> list[JobInfo]:
        return self.queue.jobs(limit=limit)

    def get(self, job_id: int) -> JobInfo | None:
        return self.queue.get(job_id)

    def running(self) -> list[JobInfo]:
        return [j for j in self.queue.jobs(active_only=True) if j.state in ("running", "stopping")]

    def queue_position(self, job_id: int) -> int | None:
        return self.queue.queue_position(job_id)

    def stop(self, job_id: int, by: Actor) -> str | None:
        return self.queue.request_stop(job_id, by=by)

    def wait(self, timeout: float | None = None, job_ids: list[int] | None = None) -> bool:
        """Blocks until the jobs (default: all) are done; False on timeout."""
        deadline = None if timeout is None else time.time() + timeout
        while True:
            active = {j.job_id for j in self.queue.jobs(active_only=True, history=False)}
            if not (active if job_ids is None else active & set(job_ids)):
                return True
            if deadline is not None and time.time() > deadline:
                return False
            # Not faster: `submit --wait` waits beside the run it waits for, on the same cores.
            time.sleep(WAIT_POLL_S)

    def close(self, kill: bool = False) -> None:
        """Stops supervising (a server shutting down); with kill, ends the workers it started too."""
        self._closed.set()
        if kill:
            for proc in self._procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    # ---- supervision

    def _monitor(self, tick_s: float) -> None:
        while not self._closed.wait(tick_s):
            try:
                self.tick()
            except Exception as err:  # the monitor must outlive a locked database or a full disk
                print(f"job monitor: {type(err).__name__}: {err}", file=sys.stderr)

    def tick(self) -> None:
        with self._lock:
            self._reap_workers()
            self._reap_dead_jobs()
            self._end_overdue_stops()
            self._start_workers()

    def _reap_workers(self) -> None:
        """Collects exited workers; a job whose worker exited before taking it fails with its log."""
        for job_id, proc in list(self._procs.items()):
            if proc.poll() is None:
                continue
            del self._procs[job_id]
            job = self.queue.get(job_id)
            if job is not None and job.state == "queued" and proc.returncode != 0:
                tail = self._log_path(job_id).read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                self.queue.finish(job_id, "failed", None, f"the worker could not start: {tail[0][:300]}")
        for job_id, ref in list(self._refs.items()):
            import ray

            if ray.wait([ref], timeout=0)[0]:
                del self._refs[job_id]

    def _reap_dead_jobs(self) -> None:
        """The jobs of dead workers end in the queue (JobQueue.reap); their runs are saved with their history."""
        self.queue.reap()
        write_pending_records(self.queue, self.store)

    def _end_overdue_stops(self) -> None:
        host = socket.gethostname()
        for job in self.queue.jobs(active_only=True, history=False):
            overdue = job.state == "stopping" and time.time() - (job.stop_requested or 0) > self.grace_s
            if overdue and job.host == host and pid_alive(job.pid):
                os.kill(job.pid, signal.SIGKILL)  # the last resort; _reap_dead_jobs saves it next tick

    def _start_workers(self) -> None:
        if self._closed.is_set():
            return
        active = self.queue.jobs(active_only=True, history=False)
        busy = sum(j.state in ("running", "stopping") for j in active)
        starting = {i for i in (*self._procs, *self._refs)}
        by_id = {j.job_id: j for j in active}
        # In the fair order, without the owners at their limit (core.jobs.schedule): what a claim would take.
        queued = [by_id[i] for i in self.queue.next_to_start() if i in by_id]
        free = self.max_running - busy - sum(1 for j in queued if j.job_id in starting)
        # A worker whose jobs are done waits WORKER_LINGER_S for the next one (core.jobs.worker.next_job): leave
        # the next jobs to idle ones, which claim them within 0.25 s. One that gives up first is reaped
        # next tick, and the job then gets a worker of its own.
        running_pids = {j.pid for j in active if j.state in ("running", "stopping")}
        queued_ids = {j.job_id for j in active if j.state == "queued"}
        idle = sum(1 for job_id, proc in self._procs.items()
                   if proc.poll() is None and job_id not in queued_ids and proc.pid not in running_pids)  # fmt: skip
        for job in [j for j in queued if j.job_id not in starting][idle : max(idle, free)]:
            (self._start_ray_task if self.executor == "ray" else self._start_process)(job)

    def threads_per_job(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.max_running)

    def _log_path(self, job_id: int) -> Path:
        return self.runs_dir / "logs" / f"job-{job_id}.log"

    def _worker_args(self, job: JobInfo) -> list[str]:
        # nice 10: the server and the browser answer at once when they need a core; training takes the rest.
        args = ["--queue", str(self.queue.path), "--job", str(job.job_id), "--threads", str(self.threads_per_job()),
                "--nice", "10"]  # fmt: skip
        return args + (["--cache-dir", str(self.cache_dir)] if self.cache_dir else [])

    def _worker_env(self) -> dict[str, str]:
        threads = str(self.threads_per_job())
        # Before torch starts: OpenMP sizes its pool once, at the first parallel region. No OMP_WAIT_POLICY=PASSIVE:
        # sleeping at every barrier made the notebook's scratch recipe 12% slower than from the CLI (5 epochs, 3
        # runs each, 23.8 s against 21.3 s, both at nice 10); nice 10 already lets the server and the browser
        # take a core when they need one.
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        env |= {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        return env

    def _start_process(self, job: JobInfo) -> None:
        """A worker for job; when it is done it goes on with the next queued jobs (within max_running).
        Forked by the launcher (core.jobs.launcher) where one runs: it starts in milliseconds, not seconds."""
        env = self._worker_env()
        argv = [
            "worker",
            *self._worker_args(job),
            "--then-below",
            str(self.max_running),
            "--linger",
            str(settings.current().worker_linger_s),
        ]
        log_path = self._log_path(job.job_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        forked = launcher.launch(argv, env, ROOT, log_path)
        if forked is not None:
            self._procs[job.job_id] = forked
            return
        launcher.start(env)  # for the next job: none answered (not started yet, or ended idle)
        with open(log_path, "ab") as log:
            self._procs[job.job_id] = subprocess.Popen(
                [sys.executable, "-m", "core", *argv],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                start_new_session=True,  # a server restart leaves running workers alone
            )  # fmt: skip

    def _start_ray_task(self, job: JobInfo) -> None:
        from core.jobs.ray_tasks import submit

        self._refs[job.job_id] = submit(job, self.queue.path, self.threads_per_job(), self.cache_dir)


def uploaded_dataset(dataset: str, by: Actor) -> None:
    """A dataset of the datasets folder is used only by whoever may (its owner, the class once shared, a teacher):
    raises PermissionDenied otherwise. Any other dataset is the server's own, set by whoever started it."""
    root = settings.current().datasets_dir
    path = Path(dataset)
    if dataset != "cifar10" and path.parent.resolve() == root.resolve():
        DatasetLibrary(root).get(path.name, by)
