"""A job's progress as the pages show it: one bar for the whole run, its text and its ETA."""

from __future__ import annotations

from dataclasses import dataclass

from core.jobs.queue import JobInfo
from core.methods.registry import get_method


def job_fraction(job: JobInfo) -> float:
    """Done so far: rows (epochs or rounds) of the rows a finished run has."""
    if job.kind != "train":  # evaluate, view, timing: their notes say how far they are
        return job.note_fraction
    return min(1.0, len(job.history) / max(1, get_method(job.cfg.method).total_units(job.cfg)))


@dataclass(frozen=True)
class Progress:
    fraction: float  # of the whole run
    text: str
    eta_s: float | None = None


def job_progress(job: JobInfo, final_pass_s: float | None) -> Progress:
    """One bar for the whole run: the epochs or rounds (their rows' seconds include the periodic
    checks) and then the final test pass, which takes final_pass_s (core.methods.step_timings.final_pass_seconds;
    None: unknown yet) of the bar and of the ETA. Before the first row, feature extraction or the
    worker's start-up shows its own note and fraction."""
    if job.kind != "train" or not job.history:
        return Progress(min(1.0, job.note_fraction), job.note or "starting a worker...")
    method = get_method(job.cfg.method)
    total, rows = method.total_units(job.cfg), len(job.history)
    train_s = job.history[-1]["seconds"]
    done = min(1.0, rows / max(1, total))
    train_left = train_s * (1 - done) / done
    tail = final_pass_s or 0.0
    testing = rows >= total and job.note.startswith("Final test pass")
    tested = job.note_fraction if testing else 0.0
    eta = None if final_pass_s is None else train_left + tail * (1 - tested)
    fraction = (train_s + tail * tested) / max(1e-9, train_s + train_left + tail)
    if testing:
        text = job.note
    elif rows >= total:
        text = f"{method.unit} {rows}/{total} · final test pass"
    else:
        text = f"{method.unit} {rows}/{total}" + (f" · then the test pass, ≈ {tail:.0f} s" if tail >= 1 else "")
    return Progress(min(1.0, fraction), text + (f" · ETA {eta:.0f} s" if eta is not None else ""), eta)
