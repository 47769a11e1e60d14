"""The run records of jobs whose worker died. The queue finds and ends such jobs (JobQueue.reap, in every
process that uses it); whoever holds the run store then writes each one's record, with the history its
worker had written, once (JobQueue.record_written is the one transaction that says who wrote it)."""

from __future__ import annotations

from core.jobs.queue import JobQueue
from core.runs.store import RunStore
from core.runs.train import failed_record


def write_pending_records(queue: JobQueue, store: RunStore) -> list[str]:
    """Saves the run of every reaped training job that has none yet; returns their run ids."""
    written = []
    for job in queue.pending_records():
        record = failed_record(job.cfg, RuntimeError(job.message), history=job.history, status=job.state,
                               started=job.started)  # fmt: skip
        record.message, record.owner = job.message, job.owner
        if queue.record_written(job.job_id, record.run_id):  # first: only then is the file written
            store.save(record)
            written.append(record.run_id)
    return written
