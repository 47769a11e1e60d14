"""Running configs: `execute` (one run, saved whatever happens) and `JobRegistry` (background jobs).

The app keeps one JobRegistry per server process (through st.cache_resource), so a run outlives
widget changes, page switches, reloads and extra browser tabs. At most `max_running` jobs train at
once (default one: two runs on the same cores only slow each other); the rest wait in a visible
queue, first come first served.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.config import TrainConfig
from core.data import Splits
from core.record import RunRecord, new_run_id
from core.registry import get_method
from core.store import RunStore
from core.train import failed_record, failure_advice, fit


def execute(
    cfg: TrainConfig,
    splits: Splits,
    store: RunStore,
    *,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cache_dir=None,
    progress=None,
    run_id: str | None = None,
) -> RunRecord:
    """Runs cfg and saves the run, also when it stops, diverges or fails; returns the saved record."""
    run_id = run_id or new_run_id(cfg)
    started = time.time()
    rows: list[dict[str, Any]] = []

    def keep_row(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_row:
            on_row(row)

    try:
        record = fit(cfg, splits, keep_row, should_stop, cache_dir=cache_dir, progress=progress, run_id=run_id)
    except (ValueError, RuntimeError, MemoryError) as err:  # bad weights, OOM, ...: saved as failed
        record = failed_record(cfg, err, splits=splits, run_id=run_id, history=rows, started=started)
    store.save(record)
    return record


@dataclass
class Job:
    job_id: int
    cfg: TrainConfig
    state: str = "queued"  # queued | running | finished | stopped | diverged | failed
    history: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    run_id: str | None = None
    record: RunRecord | None = None
    started: float | None = None
    ended: float | None = None
    progress_note: str = ""
    stop_event: threading.Event = field(default_factory=threading.Event)

    @property
    def done(self) -> bool:
        return self.state not in ("queued", "running")

    @property
    def total_units(self) -> int:
        return get_method(self.cfg.method).total_units(self.cfg)

    @property
    def unit(self) -> str:
        return get_method(self.cfg.method).unit

    @property
    def fraction(self) -> float:
        """Done so far: rows (epochs or rounds) of the rows a finished run has."""
        return min(1.0, len(self.history) / max(1, self.total_units))

    def eta_seconds(self) -> float | None:
        if not self.history or self.state != "running" or self.fraction <= 0:
            return None
        return self.history[-1]["seconds"] * (1 - self.fraction) / self.fraction


class JobRegistry:
    """Background training jobs shared by every session of one server process."""

    def __init__(
        self,
        load_splits: Callable[[TrainConfig], Splits],
        store: RunStore,
        *,
        max_running: int = 1,
        cache_dir=None,
    ) -> None:
        self._load_splits = load_splits
        self.store = store
        self.max_running = max_running
        self.cache_dir = cache_dir
        self._jobs: dict[int, Job] = {}
        self._queue: list[int] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def submit(self, cfg: TrainConfig) -> Job:
        with self._lock:
            job = Job(next(self._ids), cfg)
            self._jobs[job.job_id] = job
            self._queue.append(job.job_id)
        self._dispatch()
        return job

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def get(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    def queue_position(self, job_id: int) -> int | None:
        """1 for the next job to start; None when the job is not waiting."""
        with self._lock:
            return self._queue.index(job_id) + 1 if job_id in self._queue else None

    def running(self) -> list[Job]:
        return [j for j in self.jobs() if j.state == "running"]

    def stop(self, job_id: int) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return
            if job.state == "queued":  # never started: nothing to save
                self._queue.remove(job_id)
                job.state, job.message, job.ended = "stopped", "removed from the queue", time.time()
            job.stop_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until every job is done (for tests and scripts); False on timeout."""
        deadline = None if timeout is None else time.time() + timeout
        while any(not j.done for j in self.jobs()):
            if deadline is not None and time.time() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _dispatch(self) -> None:
        with self._lock:
            while self._queue and sum(j.state == "running" for j in self._jobs.values()) < self.max_running:
                job = self._jobs[self._queue.pop(0)]
                job.state, job.started = "running", time.time()
                threading.Thread(target=self._run, args=(job,), daemon=True, name=f"job-{job.job_id}").start()

    def _run(self, job: Job) -> None:
        try:
            splits = self._load_splits(job.cfg)

            def note(fraction: float, message: str) -> None:
                job.progress_note = message

            record = execute(
                job.cfg, splits, self.store, on_row=job.history.append,
                should_stop=job.stop_event.is_set, cache_dir=self.cache_dir, progress=note,
            )  # fmt: skip
            job.record, job.run_id = record, record.run_id
            job.state, job.message = record.status, record.message
        except Exception as err:  # data errors before the run: the job fails, the registry goes on
            job.state, job.message = "failed", failure_advice(err)
        finally:
            job.ended = time.time()
            self._dispatch()
