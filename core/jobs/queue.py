"""The job queue: an embedded SQLite database (WAL mode) beside the runs, shared by every app
session, server process, CLI command and worker that points at the same runs folder.

It holds what is in flight, never a result: queued and running jobs and their owners, their live history
rows and progress notes, stop requests, which worker runs what, and the per-owner limits a teacher set.
Claims take the fair choice across owners (core.jobs.schedule), and only an owner or a teacher may stop
a job (core.access). A finished run is a JSON file of the run
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
from pathlib import Path
from typing import Any

from core.access import Actor, PermissionDenied, check
from core.config import TrainConfig
from core.jobs.job import (
    ACTIVE,
    ADDED_COLUMNS,
    KINDS,
    LIMITED_KINDS,
    SCHEMA,
    JobInfo,
    dead_job_outcome,
    worker_dead,
)
from core.jobs.schedule import Busy, Limits, Waiting, fair_order, is_limited, queued_limit_message, startable

RUN_KINDS_SQL = ",".join("?" * len(LIMITED_KINDS))  # the placeholders of the kinds that count as runs


class QueueError(RuntimeError):
    """The job database cannot be used; the message says which file and what to do."""


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
                for name, ddl in ADDED_COLUMNS.items():
                    if name not in columns:
                        db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {ddl}")
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
        self, cfg: TrainConfig, dataset: str, *, by: Actor, kind: str = "train", run_id: str | None = None,
        request: dict[str, Any] | None = None,
    ) -> int:  # fmt: skip
        """A training job, (kind="evaluate") the full test pass of the saved run run_id, (kind="view") the
        view that `request` describes, or (kind="timing") the step times of cfg's estimate; owned by `by`.
        A student past the class's limit of waiting jobs is refused (PermissionDenied, saying why)."""
        with_request = kind in ("view", "prepare")
        if kind not in KINDS or (kind == "evaluate") != (run_id is not None) or with_request != bool(request):
            raise ValueError(f"a job is one of {KINDS}; only an evaluate job names a run, only a view or prepare job "
                             f"has a request (got {kind}, {run_id}, {request})")  # fmt: skip
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # the count and the insert at once: two tabs cannot both pass the limit
            if is_limited(kind, by.role):
                waiting = db.execute(
                    f"SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND owner = ? AND role != 'teacher' AND kind IN "
                    f"({RUN_KINDS_SQL})", (by.name, *LIMITED_KINDS),
                ).fetchone()[0]  # fmt: skip
                if (refusal := queued_limit_message(by.name, waiting, self._limits(db))) is not None:
                    db.execute("ROLLBACK")
                    raise PermissionDenied(refusal)
            cur = db.execute(
                "INSERT INTO jobs (config, dataset, kind, run_id, request, created, owner, role) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (cfg.to_json(), dataset, kind, run_id, json.dumps(request or {}, sort_keys=True), time.time(),
                 by.name, by.role),
            )  # fmt: skip
            db.execute("COMMIT")
            return int(cur.lastrowid)

    def request_stop(self, job_id: int, *, by: Actor) -> str | None:
        """A queued job leaves the queue (nothing to save); a running one is asked to stop. Its new state,
        None when there is no such job. Only its owner or a teacher may (PermissionDenied)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT state, owner FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                db.execute("COMMIT")
                return None
            try:
                check(by, row["owner"], "stop", f"job {job_id}")
            except PermissionDenied:
                db.execute("ROLLBACK")
                raise
            state, stop_by = row["state"], (by.name if by.name != row["owner"] else None)
            if state == "queued":
                state = "stopped"
                message = "removed from the queue" + (f" by {by.name} (teacher)" if stop_by else "")
                db.execute("UPDATE jobs SET state = ?, message = ?, ended = ?, stop_by = ? WHERE id = ?",
                           (state, message, time.time(), stop_by, job_id))  # fmt: skip
            elif state == "running":
                state = "stopping"
                db.execute("UPDATE jobs SET state = ?, stop_requested = ?, stop_by = ? WHERE id = ?",
                           (state, time.time(), stop_by, job_id))  # fmt: skip
            db.execute("COMMIT")
            return state

    # ---- the limits a teacher sets

    def _limits(self, db: sqlite3.Connection) -> Limits:
        values = {r["name"]: r["value"] for r in db.execute("SELECT name, value FROM limits")}
        return Limits(**{k: v for k, v in values.items() if k in ("running", "queued")})

    def limits(self) -> Limits:
        with self._connect() as db:
            return self._limits(db)

    def set_limits(self, limits: Limits, *, by: Actor) -> None:
        if not by.teacher:
            raise PermissionDenied(f"{by.name} is not a teacher: only a teacher can change the class's limits")
        with self._connect() as db:
            for name in ("running", "queued"):
                db.execute("INSERT OR REPLACE INTO limits VALUES (?, ?)", (name, getattr(limits, name)))

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
            if job_id is None:  # the fair choice (core.jobs.schedule), not the oldest job
                job_id = next(iter(startable(*self._schedule(db), self._limits(db))), None)
            elif db.execute("SELECT id FROM jobs WHERE state = 'queued' AND id = ?", (job_id,)).fetchone() is None:
                job_id = None
            if job_id is None:
                db.execute("COMMIT")
                return None
            now = time.time()
            db.execute(
                "UPDATE jobs SET state = 'running', started = ?, heartbeat = ?, host = ?, pid = ? WHERE id = ?",
                (now, now, socket.gethostname(), os.getpid(), job_id),
            )
            db.execute("COMMIT")
        return self.get(job_id)

    def _schedule(self, db: sqlite3.Connection) -> tuple[list[Waiting], list[Busy], dict[str, float]]:
        """What core.jobs.schedule decides from: the queued jobs, the running ones, when each owner last started."""
        marks = ",".join("?" * len(ACTIVE))
        rows = db.execute(f"SELECT id, owner, kind, role, state FROM jobs WHERE state IN ({marks})", ACTIVE).fetchall()
        waiting = [Waiting(r["id"], r["owner"], r["kind"], is_limited(r["kind"], r["role"]))
                   for r in rows if r["state"] == "queued"]  # fmt: skip
        running = [Busy(r["owner"], r["kind"], is_limited(r["kind"], r["role"]))
                   for r in rows if r["state"] != "queued"]  # fmt: skip
        owners = {w.owner for w in waiting}
        marks = ",".join("?" * len(owners))
        sql = (f"SELECT owner, MAX(started) FROM jobs WHERE owner IN ({marks}) AND started IS NOT NULL AND kind IN "
               f"({RUN_KINDS_SQL}) GROUP BY owner")  # fmt: skip
        last = {r[0]: r[1] for r in db.execute(sql, [*owners, *LIMITED_KINDS])}
        return waiting, running, last

    def next_to_start(self) -> list[int]:
        """The queued jobs that may start now, in the order claims take them (what a supervisor starts)."""
        with self._connect() as db:
            return startable(*self._schedule(db), self._limits(db))

    def positions(self) -> dict[int, int]:
        """Each queued job's place in the fair order (1: the next to start)."""
        with self._connect() as db:
            return {job_id: i + 1 for i, job_id in enumerate(fair_order(*self._schedule(db)))}

    def claim_siblings(self, job: JobInfo, limit: int) -> list[JobInfo]:
        """Atomically takes up to `limit` queued training jobs that differ from `job` (claimed) only in
        their seed, for this process: seeds of one recipe that train together (core.runs.multiseed)."""
        recipe = job.cfg.with_(seed=0)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(  # one owner's seeds only: stacking must not take a classmate's turn
                "SELECT id, config FROM jobs WHERE state = 'queued' AND kind = 'train' AND dataset = ? AND owner = ? "
                "AND role = ? ORDER BY id", (job.dataset, job.owner, job.role),
            ).fetchall()  # fmt: skip
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

    def jobs(
        self, *, limit: int = 200, ids: list[int] | None = None, active_only: bool = False, owner: str | None = None,
        history: bool = True,
    ) -> list[JobInfo]:  # fmt: skip
        """Newest first, with their history rows (history=False: without, for the supervisor's ticks, which never
        read them: parsing every row twice a second took CPU from the run); (owner=NAME) only NAME's."""
        where, args = [], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if ids is not None:
            where.append(f"id IN ({','.join('?' * len(ids))})")
            args += ids
        if active_only:
            where.append(f"state IN ({','.join('?' * len(ACTIVE))})")
            args += list(ACTIVE)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
        with self._connect() as db:
            rows = db.execute(sql, [*args, limit]).fetchall()
            rows_of: dict[int, list] = {r["id"]: [] for r in rows}
            if rows and history:
                marks = ",".join("?" * len(rows))
                for r in db.execute(f"SELECT job_id, row FROM rows WHERE job_id IN ({marks}) ORDER BY job_id, idx",
                                    list(rows_of)):  # fmt: skip
                    rows_of[r["job_id"]].append(json.loads(r["row"]))
        out = []
        for r in rows:
            data = dict(r)
            cfg = TrainConfig.from_json(data.pop("config"))
            request = json.loads(data.pop("request") or "{}")
            out.append(JobInfo(job_id=data.pop("id"), cfg=cfg, history=rows_of[r["id"]], request=request, **data))
        return out

    def queue_position(self, job_id: int) -> int | None:
        return self.positions().get(job_id)

    def count(self, *states: str) -> int:
        with self._connect() as db:
            marks = ",".join("?" * len(states))
            return int(db.execute(f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})", states).fetchone()[0])
