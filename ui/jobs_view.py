"""The Train page's list of jobs (from the queue in the runs folder): finished jobs are drawn once,
running and queued ones live in a fragment that reruns only as often as their rows arrive (about
1 s for short epochs, up to 5 s for long ones)."""

from __future__ import annotations

import streamlit as st

from core.charts import history_frame, learning_curves
from core.jobs import eta_seconds, job_fraction
from core.queue import JobInfo
from core.record import RunRecord
from core.registry import get_method
from core.store import StoreError
from ui.common import config_caption, registry


@st.cache_data(max_entries=64, show_spinner=False)
def _curves(job_id: int, rows: int, _job: JobInfo):
    """The learning-curve chart of a job with `rows` rows: rebuilt only when a row arrives."""
    record = RunRecord(run_id=f"job-{job_id}", status="finished", config=_job.cfg, history=list(_job.history[:rows]))
    return learning_curves(history_frame([record]), height=160)


@st.cache_data(max_entries=64, show_spinner=False)
def _saved(run_id: str) -> RunRecord | None:
    try:
        return registry().store.load(run_id)
    except StoreError:
        return None


def show_job(job: JobInfo, n_test: int) -> None:
    reg = registry()
    method = get_method(job.cfg.method)
    total = method.total_units(job.cfg)
    head = st.columns([4, 1])
    head[0].markdown(f"**Job {job.job_id}** · {config_caption(job.cfg)} · **{job.state}**")
    if job.state == "queued":
        head[0].caption(f"Waiting: position {reg.queue_position(job.job_id)} in the queue")
    if job.state in ("queued", "running") and head[1].button("Stop", key=f"stop_{job.job_id}", icon=":material/stop:"):
        reg.stop(job.job_id)
        st.rerun(scope="fragment")
    if job.state == "stopping":
        st.caption("Stopping: the run ends within a second or two and is saved as stopped, with its last test check.")
    if job.state == "running":
        if job.history and len(job.history) < total:
            eta = eta_seconds(job)
            text = f"{method.unit} {len(job.history)}/{total}" + (f" · ETA {eta:.0f} s" if eta else "")
            st.progress(job_fraction(job), text=text)
        else:  # before the first row (features) and after the last (the final test pass): the phase's own bar
            st.progress(min(1.0, job.note_fraction), text=job.note or "starting a worker...")
    if job.history:
        st.altair_chart(_curves(job.job_id, len(job.history), job), width="content")
    record = _saved(job.run_id) if job.done and job.run_id else None
    if record is not None and record.metrics.test_acc is not None:
        m = record.metrics
        check = " (the last check before Stop)" if m.partial else ""
        st.markdown(
            f"Test accuracy **{m.test_acc:.1%}** on {m.test_images or n_test:,} images{check}, "
            f"train {m.train_acc:.1%} · saved as `{job.run_id}`"
        )
    if job.message:
        (st.error if job.state in ("failed", "diverged", "interrupted") else st.info)(job.message)


def refresh_interval(jobs: list[JobInfo]) -> float | None:
    """Rerun about once per row of the fastest running job, between 1 and 10 s, and every 2 s in a
    phase without rows (features, the final test pass); None when idle. Every rerun costs the CPU
    that trains: on 2 cores, a redraw per second of a page slowed its own run tenfold."""
    active = [j for j in jobs if not j.done]
    if not active:
        return None
    per_row = [j.history[-1]["seconds"] / len(j.history) for j in active if j.history]
    return min(10.0, max(1.0, min(per_row))) if per_row else 2.0


def show_jobs(n_test: int, limit: int = 6) -> None:
    jobs = registry().jobs(limit=limit)
    if not jobs:
        st.caption("No runs in the queue yet.")
        return
    had_active = {j.job_id for j in jobs if not j.done}

    @st.fragment(run_every=refresh_interval(jobs))
    def live() -> None:
        active = [j for j in registry().queue.jobs(active_only=True) if j.job_id in had_active]
        for job in active:
            with st.container(border=True):
                show_job(job, n_test)
        if had_active - {j.job_id for j in active}:
            st.rerun()  # a job ended: redraw the page once, with it among the finished

    live()
    for job in jobs:
        if job.done and job.job_id not in had_active:
            with st.container(border=True):
                show_job(job, n_test)
