"""One job as the queue (core.jobs.queue) holds it: its table, its record in Python, and how the job of a dead
worker ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.access import LOCAL, Actor
from core.config import TrainConfig
from core.jobs.launcher import pid_alive

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    config TEXT NOT NULL,
    dataset TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'train',
    state TEXT NOT NULL DEFAULT 'queued',
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    host TEXT,
    pid INTEGER,
    heartbeat REAL,
    stop_requested REAL,
    run_id TEXT,
    message TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    note_fraction REAL NOT NULL DEFAULT 0,
    record_pending INTEGER NOT NULL DEFAULT 0,
    request TEXT NOT NULL DEFAULT '{}',
    owner TEXT NOT NULL DEFAULT 'local',
    role TEXT NOT NULL DEFAULT 'teacher',
    stop_by TEXT
);
CREATE TABLE IF NOT EXISTS rows (
    job_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    row TEXT NOT NULL,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS limits (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, id);
"""
# Columns added since the first queue, with how an older queue's rows read: before owners, everything was the
# one local user's, who is the teacher of single-user mode.
ADDED_COLUMNS = {
    "kind": "TEXT NOT NULL DEFAULT 'train'",
    "request": "TEXT NOT NULL DEFAULT '{}'",
    "record_pending": "INTEGER NOT NULL DEFAULT 0",
    "owner": "TEXT NOT NULL DEFAULT 'local'",
    "role": "TEXT NOT NULL DEFAULT 'teacher'",
    "stop_by": "TEXT",
}

ACTIVE = ("queued", "running", "stopping")
STALE_HEARTBEAT_S = 60.0  # a worker on another machine that has not beaten for this long is dead
# train: a run. evaluate: a saved run's full test pass (core.runs.evaluate). view: what a page shows that takes
# seconds (core.views.computed). timing: the step times behind an estimate. The server computes none of them.
KINDS = ("train", "evaluate", "view", "timing", "prepare")  # prepare: a lesson's caches (core.runs.prepare)
# The kinds a per-owner limit counts (core.jobs.schedule): views and timings take seconds, and a page asks
# for them on its own.
LIMITED_KINDS = ("train", "evaluate")


@dataclass
class JobInfo:
    job_id: int
    cfg: TrainConfig
    dataset: str
    state: str  # queued | running | stopping | finished | stopped | diverged | failed | interrupted
    created: float
    kind: str = "train"
    owner: str = LOCAL
    role: str = "teacher"  # of the owner when they queued it: a teacher's evaluate may touch anyone's run
    started: float | None = None
    ended: float | None = None
    host: str | None = None
    pid: int | None = None
    heartbeat: float | None = None
    stop_requested: float | None = None
    stop_by: str | None = None  # who pressed Stop, when it was not the owner
    run_id: str | None = None
    message: str = ""
    note: str = ""
    note_fraction: float = 0.0
    record_pending: int = 0  # 1: its worker died, and its run record (with this history) is still to be written
    request: dict[str, Any] = field(default_factory=dict)  # what a view job computes
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.state not in ACTIVE

    @property
    def actor(self) -> Actor:
        """Who queued it, as the run store checks them (a worker evaluates a run only for its owner or a teacher)."""
        return Actor(self.owner, teacher=self.role == "teacher")


def dead_job_outcome(kind: str, stop_asked: bool) -> tuple[str, str]:
    """The state and message of a job whose worker died."""
    state = "stopped" if stop_asked else "interrupted"
    if kind == "evaluate":  # the saved run is only rewritten at the end of its pass: it is intact
        return state, f"evaluation {state}: the run keeps its partial accuracy"
    if stop_asked:
        return state, "stopped: the worker did not stop within the grace period and was ended; its history is kept"
    return state, (
        "interrupted: the worker process ended without saving (killed, crashed or out of memory); its history "
        "is kept. Start it again, maybe with a smaller batch or resolution"
    )


def worker_dead(job_host: str | None, pid: int | None, heartbeat: float | None, host: str, now: float) -> bool:
    """On this host the worker's pid tells; of another machine's worker, only its heartbeat."""
    if job_host == host:
        return not pid_alive(pid)
    return now - (heartbeat or 0) > STALE_HEARTBEAT_S


def stopped_message(job: JobInfo, message: str) -> str:
    """A run's message once it stopped: who stopped it, when it was not its owner (a teacher)."""
    if job.stop_by and job.stop_by != job.owner:
        return f"stopped by {job.stop_by} (teacher). {message}"
    return message
