"""A job's progress as the pages show it: one bar for the whole run, its text and its ETA."""

from __future__ import annotations

import time
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


def job_progress(
    job: JobInfo, final_pass_s: float | None, estimate_s: float | None = None, now: float | None = None
) -> Progress:
    """One bar for the whole run, from its start: feature extraction (or whatever comes before the first row),
    the epochs or rounds (their rows' seconds include the periodic checks) and the final test pass, which
    takes final_pass_s (core.methods.step_timings.final_pass_seconds; None: unknown yet).

    Before the first row the ETA is the run's estimate (estimate_s, from measured step times, as the Train
    page showed it at Start) less the time it has run; from the rows on, the rows' own pace. The bar is the
    time run over the time run plus the time left, so it moves on across phases instead of restarting."""
    if job.kind != "train":  # evaluate, view, timing: their notes say how far they are
        return Progress(min(1.0, job.note_fraction), job.note or "starting a worker...")
    now = time.time() if now is None else now
    elapsed = max(0.0, now - job.started) if job.started else None
    if not job.history:
        text = job.note or "starting a worker..."
        if estimate_s is None or elapsed is None:
            return Progress(min(1.0, job.note_fraction), text)
        if elapsed > estimate_s:  # past the estimate: say so rather than count below zero
            return Progress(0.95, f"{text} · longer than its estimate of {_seconds(estimate_s)}")
        left = estimate_s - elapsed
        return Progress(elapsed / estimate_s, f"{text} · ETA ≈ {_seconds(left)}", left)
    method = get_method(job.cfg.method)
    total, rows = method.total_units(job.cfg), len(job.history)
    train_s = job.history[-1]["seconds"]
    done = min(1.0, rows / max(1, total))
    train_left = train_s * (1 - done) / done
    tail = final_pass_s or 0.0
    testing = rows >= total and job.note.startswith("Final test pass")
    tested = job.note_fraction if testing else 0.0
    eta = None if final_pass_s is None else train_left + tail * (1 - tested)
    if elapsed is not None and eta is not None:
        fraction = elapsed / max(1e-9, elapsed + eta)
    else:
        fraction = (train_s + tail * tested) / max(1e-9, train_s + train_left + tail)
    if testing:
        text = job.note
    elif rows >= total:
        text = f"{method.unit} {rows}/{total} · final test pass"
    else:
        text = f"{method.unit} {rows}/{total}" + (f" · then the test pass, ≈ {tail:.0f} s" if tail >= 1 else "")
    return Progress(min(1.0, fraction), text + (f" · ETA {_seconds(eta)}" if eta is not None else ""), eta)


def _seconds(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
