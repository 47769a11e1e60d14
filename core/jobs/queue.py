"""The job queue: an embedded SQLite database (WAL mode) beside the runs, shared by every app
session, server process, CLI command and worker that points at the same runs folder.

It holds what is in flight, never a result: queued and running jobs, their live history rows and
progress notes, stop requests, and which worker runs what. A finished run is a JSON file of the run
store, as before. Every call opens its own short connection, so threads and processes never share
one; WAL lets readers (the Train page, every second) run beside the one writer of the moment.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import TrainConfig
from core.jobs.launcher import pid_alive

ACTIVE = ("queued", "running", "stopping")
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
    request TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS rows (
    job_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    row TEXT NOT NULL,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, id);
"""
STALE_HEARTBEAT_S = 60.0  # a worker on another machine that has not beaten for this long is dead
# train: a run. evaluate: a saved run's full test pass (core.runs.evaluate). view: what a page shows that takes
# seconds (core.views.computed). timing: the step times behind an estimate. The server computes none of them.
KINDS = ("train", "evaluate", "view", "timing")


class QueueError(RuntimeError):
    """The job database cannot be used; the message says which file and what to do."""


@dataclass
class JobInfo:
    job_id: int
    cfg: TrainConfig
    dataset: str
    state: str  # queued | running | stopping | finished | stopped | diverged | failed | interrupted
    created: float
    kind: str = "train"
    started: float | None = None
    ended: float | None = None
    host: str | None = None
    pid: int | None = None
    heartbeat: float | None = None
    stop_requested: float | None = None
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


def default_queue_path(runs_dir: Path) -> Path:
    return Path(runs_dir) / "queue.sqlite"


class JobQueue:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as db:
                db.executescript(SCHEMA)
                columns = {r["name"] for r in db.execute("PRAGMA table_info(jobs)")}
                if "kind" not in columns:  # a queue written before evaluation jobs existed
                    db.execute("ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'train'")
                if "request" not in columns:  # a queue written before view and timing jobs
                    db.execute("ALTER TABLE jobs ADD COLUMN request TEXT NOT NULL DEFAULT '{}'")
                if "record_pending" not in columns:  # a queue written before the queue reaped dead jobs
                    db.execute("ALTER TABLE jobs ADD COLUMN record_pending INTEGER NOT NULL DEFAULT 0")
        except sqlite3.DatabaseError as err:
            raise QueueError(
                f"the job database {self.path} cannot be used ({err}). Saved runs are safe (they are JSON files "
                f"beside it): move {self.path.name} away and restart to begin with an empty queue"
            ) from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            yield db
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):
                raise QueueError(f"the job database {self.path} stayed locked for 30 s ({err}); try again") from None
            raise
        finally:
            db.close()

    # ---- producers: the app, the CLI

    def submit(
        self, cfg: TrainConfig, dataset: str, *, kind: str = "train", run_id: str | None = None,
        request: dict[str, Any] | None = None,
    ) -> int:  # fmt: skip
        """A training job, (kind="evaluate") the full test pass of the saved run run_id, (kind="view") the
        view that `request` describes, or (kind="timing") the step times of cfg's estimate."""
        if kind not in KINDS or (kind == "evaluate") != (run_id is not None) or (kind == "view") != bool(request):
            raise ValueError(f"a job is one of {KINDS}; only an evaluate job names a run, only a view job has a "
                             f"request (got {kind}, {run_id}, {request})")  # fmt: skip
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO jobs (config, dataset, kind, run_id, request, created) VALUES (?, ?, ?, ?, ?, ?)",
                (cfg.to_json(), dataset, kind, run_id, json.dumps(request or {}, sort_keys=True), time.time()),
            )
            return int(cur.lastrowid)

    def request_stop(self, job_id: int) -> str | None:
        """A queued job leaves the queue (nothing to save); a running one is asked to stop. Its new state."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                db.execute("COMMIT")
                return None
            state = row["state"]
            if state == "queued":
                state = "stopped"
                db.execute("UPDATE jobs SET state = ?, message = 'removed from the queue', ended = ? WHERE id = ?",
                           (state, time.time(), job_id))  # fmt: skip
            elif state == "running":
                state = "stopping"
                db.execute("UPDATE jobs SET state = ?, stop_requested = ? WHERE id = ?", (state, time.time(), job_id))
            db.execute("COMMIT")
            return state

    # ---- the jobs of dead workers

    def reap(self) -> list[int]:
        """Ends the jobs whose worker died (`worker_dead`) as *interrupted* (*stopped* where Stop was asked),
        their history kept; a training job is marked record_pending, for whoever holds the run store to write
        its run (core.jobs.reaping). A claim, a listing and the supervisor all call it, so without a server a
        dead worker's job still ends. Returns the ids it ended."""
        now, host = time.time(), socket.gethostname()
        with self._connect() as db:  # a plain read first: claims poll every 0.25 s, and nothing is dead mostly
            rows = db.execute("SELECT id, kind, host, pid, heartbeat, stop_requested FROM jobs "
                              "WHERE state IN ('running', 'stopping')").fetchall()  # fmt: skip
        dead = [r for r in rows if worker_dead(r["host"], r["pid"], r["heartbeat"], host, now)]
        ended: list[int] = []
        if not dead:
            return ended
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # one reaper at a time; a job that ended meanwhile is left alone
            for r in dead:
                state, message = dead_job_outcome(r["kind"], r["stop_requested"] is not None)
                cur = db.execute("UPDATE jobs SET state = ?, message = ?, ended = ?, record_pending = ? "
                                 "WHERE id = ? AND state IN ('running', 'stopping')",
                                 (state, message, now, int(r["kind"] == "train"), r["id"]))  # fmt: skip
                if cur.rowcount:
                    ended.append(r["id"])
            db.execute("COMMIT")
        return ended

    def pending_records(self) -> list[JobInfo]:
        """Jobs of dead workers whose run record is still to be written."""
        with self._connect() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE record_pending = 1 ORDER BY id")]
        return self.jobs(ids=ids) if ids else []

    def record_written(self, job_id: int, run_id: str) -> bool:
        """Marks a dead job's run record written; False when another process wrote it first."""
        with self._connect() as db:
            cur = db.execute("UPDATE jobs SET run_id = ?, record_pending = 0 WHERE id = ? AND record_pending = 1",
                             (run_id, job_id))  # fmt: skip
            return cur.rowcount == 1

    # ---- workers

    def claim(self, job_id: int | None = None, *, below: int | None = None) -> JobInfo | None:
        """Atomically takes the oldest queued job (or job_id) for this process; None when there is none,
        or (below=N) when N jobs are running already: a worker that goes on to the next job must not
        exceed the limit the supervisor keeps. Dead workers' jobs are reaped first: they hold no slot."""
        self.reap()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # one claimer at a time: no job runs twice
            running = db.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('running', 'stopping')").fetchone()[0]
            if below is not None and running >= below:
                db.execute("COMMIT")
                return None
            if job_id is None:
                row = db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1").fetchone()
            else:
                row = db.execute("SELECT id FROM jobs WHERE state = 'queued' AND id = ?", (job_id,)).fetchone()
            if row is None:
                db.execute("COMMIT")
                return None
            now = time.time()
            db.execute(
                "UPDATE jobs SET state = 'running', started = ?, heartbeat = ?, host = ?, pid = ? WHERE id = ?",
                (now, now, socket.gethostname(), os.getpid(), row["id"]),
            )
            db.execute("COMMIT")
        return self.get(row["id"])

    def claim_siblings(self, job: JobInfo, limit: int) -> list[JobInfo]:
        """Atomically takes up to `limit` queued training jobs that differ from `job` (claimed) only in
        their seed, for this process: seeds of one recipe that train together (core.runs.multiseed)."""
        recipe = job.cfg.with_(seed=0)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(
                "SELECT id, config FROM jobs WHERE state = 'queued' AND kind = 'train' AND dataset = ? ORDER BY id",
                (job.dataset,),
            ).fetchall()
            seeds, ids = {job.cfg.seed}, []
            for row in rows:
                try:
                    cfg = TrainConfig.from_json(row["config"])
                except ValueError:
                    continue
                if len(ids) < limit and cfg.seed not in seeds and cfg.with_(seed=0) == recipe:
                    seeds.add(cfg.seed)
                    ids.append(row["id"])
            now = time.time()
            for job_id in ids:
                db.execute(
                    "UPDATE jobs SET state = 'running', started = ?, heartbeat = ?, host = ?, pid = ? WHERE id = ?",
                    (now, now, socket.gethostname(), os.getpid(), job_id),
                )
            db.execute("COMMIT")
        return [self.get(job_id) for job_id in ids]

    def add_row(self, job_id: int, row: dict[str, Any]) -> None:
        with self._connect() as db:
            n = db.execute("SELECT COUNT(*) FROM rows WHERE job_id = ?", (job_id,)).fetchone()[0]
            db.execute("INSERT INTO rows VALUES (?, ?, ?)", (job_id, n, json.dumps(row)))
            db.execute("UPDATE jobs SET heartbeat = ? WHERE id = ?", (time.time(), job_id))

    def set_note(self, job_id: int, fraction: float, text: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE jobs SET note = ?, note_fraction = ?, heartbeat = ? WHERE id = ?",
                       (text, fraction, time.time(), job_id))  # fmt: skip

    def beat(self, job_id: int) -> None:
        with self._connect() as db:
            db.execute("UPDATE jobs SET heartbeat = ? WHERE id = ?", (time.time(), job_id))

    def stop_requested(self, job_id: int) -> bool:
        with self._connect() as db:
            row = db.execute("SELECT stop_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return row is not None and row["stop_requested"] is not None

    def finish(self, job_id: int, state: str, run_id: str | None, message: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE jobs SET state = ?, run_id = ?, message = ?, ended = ? WHERE id = ?",
                       (state, run_id, message, time.time(), job_id))  # fmt: skip

    # ---- readers

    def get(self, job_id: int) -> JobInfo | None:
        jobs = self.jobs(ids=[job_id])
        return jobs[0] if jobs else None

    def jobs(self, *, limit: int = 200, ids: list[int] | None = None, active_only: bool = False) -> list[JobInfo]:
        """Newest first, with their history rows."""
        where, args = [], []
        if ids is not None:
            where.append(f"id IN ({','.join('?' * len(ids))})")
            args += ids
        if active_only:
            where.append(f"state IN ({','.join('?' * len(ACTIVE))})")
            args += list(ACTIVE)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
        with self._connect() as db:
            rows = db.execute(sql, [*args, limit]).fetchall()
            history: dict[int, list] = {r["id"]: [] for r in rows}
            if rows:
                marks = ",".join("?" * len(rows))
                for r in db.execute(f"SELECT job_id, row FROM rows WHERE job_id IN ({marks}) ORDER BY job_id, idx",
                                    list(history)):  # fmt: skip
                    history[r["job_id"]].append(json.loads(r["row"]))
        out = []
        for r in rows:
            data = dict(r)
            cfg = TrainConfig.from_json(data.pop("config"))
            request = json.loads(data.pop("request") or "{}")
            out.append(JobInfo(job_id=data.pop("id"), cfg=cfg, history=history[r["id"]], request=request, **data))
        return out

    def queue_position(self, job_id: int) -> int | None:
        with self._connect() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY id")]
        return ids.index(job_id) + 1 if job_id in ids else None

    def count(self, *states: str) -> int:
        with self._connect() as db:
            marks = ",".join("?" * len(states))
            return int(db.execute(f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})", states).fetchone()[0])
