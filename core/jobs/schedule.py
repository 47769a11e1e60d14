"""Who runs next: a fair queue across owners, and the per-owner limits a teacher sets. Pure functions over
what the queue holds (core.jobs.queue calls them inside its transactions).

First come, first served lets one student's "Repeat with 10 seeds" put a class behind ten runs. Here the
next free slot goes to the owner with the fewest running jobs and, among those, the one served longest ago
(never served counts as longest): round robin across owners, oldest job first within an owner. An owner at
their running limit waits, their jobs keep their place. A teacher's jobs (and single-user mode, whose one
owner is the teacher) have no limit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from core.jobs.job import LIMITED_KINDS

DEFAULT_RUNNING = 1
DEFAULT_QUEUED = 5


@dataclass(frozen=True)
class Limits:
    """Per owner (students only): jobs running at once, and jobs waiting."""

    running: int = DEFAULT_RUNNING
    queued: int = DEFAULT_QUEUED

    def __post_init__(self) -> None:
        for name in ("running", "queued"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 100:
                raise ValueError(f"the limit of {name} jobs per student must be a whole number from 1 to 100, "
                                 f"not {value!r}")  # fmt: skip


@dataclass(frozen=True)
class Waiting:
    """A queued job, as the schedule sees it."""

    job_id: int
    owner: str
    kind: str
    limited: bool  # a student's train or evaluate job: the owner's running limit applies


@dataclass(frozen=True)
class Busy:
    """A running job, as the schedule sees it."""

    owner: str
    kind: str
    limited: bool


def fair_order(waiting: list[Waiting], running: Iterable[Busy], last_started: dict[str, float]) -> list[int]:
    """The ids of `waiting` in the order they will start: each next one goes to the owner with the fewest
    runs (train and evaluate jobs) running, counting those ordered before it, and on a tie to the owner whose
    last run started longest ago. A page's view or timing job takes its turn but, taking seconds, does not
    count as a run."""
    load = Counter(b.owner for b in running if b.kind in LIMITED_KINDS)  # a page's view or timing takes seconds
    served = dict(last_started)
    rank = 0.0
    by_id = {w.job_id: w for w in waiting}
    queues: dict[str, list[int]] = {}
    for w in sorted(waiting, key=lambda w: w.job_id):
        queues.setdefault(w.owner, []).append(w.job_id)
    order = []
    while queues:
        owner = min(queues, key=lambda o: (load[o], served.get(o, float("-inf")), queues[o][0]))
        order.append(queues[owner].pop(0))
        if not queues[owner]:
            del queues[owner]
        if by_id[order[-1]].kind in LIMITED_KINDS:
            load[owner] += 1
            rank += 1
            served[owner] = 1e18 + rank  # served now: after every real start time, and after those ordered before
    return order


def startable(waiting: list[Waiting], running: list[Busy], last_started: dict[str, float], limits: Limits) -> list[int]:
    """`fair_order`, without the jobs whose owner is at their running limit now: what may start next."""
    counted = Counter(b.owner for b in running if b.limited)
    by_id = {w.job_id: w for w in waiting}
    out = []
    for job_id in fair_order(waiting, running, last_started):
        w = by_id[job_id]
        if w.limited and counted[w.owner] >= limits.running:
            continue
        if w.limited:
            counted[w.owner] += 1  # a second job of the same owner would pass the limit once the first started
        out.append(job_id)
    return out


def is_limited(kind: str, role: str) -> bool:
    return role != "teacher" and kind in LIMITED_KINDS


def queued_limit_message(owner: str, waiting: int, limits: Limits) -> str | None:
    """Why `owner` may not queue one more job, or None."""
    if waiting >= limits.queued:
        return (f"{owner} has {waiting} jobs waiting already, the class's limit: wait for one to start, or stop "
                "one, then queue this again")  # fmt: skip
    return None


def expected_wait(place: int, ahead_seconds: list[float], running_left: list[float], slots: int) -> float:
    """Seconds until the job at `place` (1 = next) starts: the jobs ahead of it and the running ones' remaining
    time, shared by `slots` workers (a greedy fill: each next job takes the slot that frees first)."""
    free_at = sorted([*running_left, *[0.0] * max(0, slots - len(running_left))])[:slots] or [0.0]
    for seconds in ahead_seconds[: max(0, place - 1)]:
        first = free_at.pop(0)
        free_at.append(first + seconds)
        free_at.sort()
    return free_at[0]
