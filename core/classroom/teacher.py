"""What only a teacher does to the class: remove a student (their jobs stopped, their runs deleted, their name
freed) and clear the class. Each step goes through the queue and the run store, which check the teacher."""

from __future__ import annotations

from collections.abc import Callable

from core.access import LOCAL, Actor, PermissionDenied
from core.classroom.roster import Roster
from core.jobs.queue import JobInfo, JobQueue
from core.runs.store import RunStore


def _stop_jobs(queue: JobQueue, by: Actor, whose: Callable[[JobInfo], bool]) -> int:
    """Asks every queued or running job that `whose` picks to stop; returns how many."""
    stopped = 0
    for job in queue.jobs(active_only=True, limit=10_000):
        if job.state != "stopping" and whose(job):
            stopped += queue.request_stop(job.job_id, by=by) is not None
    return stopped


def remove_student(name: str, queue: JobQueue, store: RunStore, roster: Roster, *, by: Actor) -> dict[str, int]:
    """Stops `name`'s jobs, deletes their runs and frees their name; returns what it did."""
    if not by.teacher:
        raise PermissionDenied(f"{by.name} is not a teacher: only a teacher can remove a student")
    stopped = _stop_jobs(queue, by, lambda job: job.owner == name)
    deleted = store.delete_owner(name, by=by)
    roster.remove(name, by=by)
    return {"jobs stopped": stopped, "runs deleted": len(deleted)}


def clear_class(queue: JobQueue, store: RunStore, roster: Roster, *, by: Actor, delete_runs: bool) -> dict[str, int]:
    """Ends the class: every student's job stopped, every student signed out (seeds forgotten) and, with
    delete_runs, every run that is not a teacher's deleted and the names free again. Teachers' runs and the
    lesson stay."""
    if not by.teacher:
        raise PermissionDenied(f"{by.name} is not a teacher: only a teacher can clear the class")
    teachers = {m["name"] for m in roster.members() if m["role"] == "teacher"} | {by.name}
    stopped = _stop_jobs(queue, by, lambda job: job.role != "teacher")
    deleted = 0
    if delete_runs:
        for run in store.runs():
            if run.owner not in teachers and run.owner != LOCAL:
                store.delete(run.run_id, by=by)
                deleted += 1
    roster.clear(by=by, free_names=delete_runs)
    return {"jobs stopped": stopped, "runs deleted": deleted}
