"""The Train page's list of jobs: finished jobs are drawn once, running and queued ones live in a
fragment that reruns only as often as their rows arrive (about 1 s for short epochs, up to 5 s)."""

from __future__ import annotations

import streamlit as st

from core.charts import history_frame, learning_curves
from core.jobs import Job
from core.record import RunRecord
from ui.common import config_caption, registry


@st.cache_data(max_entries=64, show_spinner=False)
def _curves(job_id: int, rows: int, _job: Job):
    """The learning-curve chart of a job with `rows` rows: rebuilt only when a row arrives."""
    record = RunRecord(run_id=f"job-{job_id}", status="finished", config=_job.cfg, history=list(_job.history[:rows]))
    return learning_curves(history_frame([record]), height=160)


def show_job(job: Job, n_test: int) -> None:
    reg = registry()
    head = st.columns([4, 1])
    head[0].markdown(f"**Job {job.job_id}** · {config_caption(job.cfg)} · **{job.state}**")
    if job.state == "queued":
        head[0].caption(f"Waiting: position {reg.queue_position(job.job_id)} in the queue")
    if not job.done and head[1].button("Stop", key=f"stop_{job.job_id}", icon=":material/stop:"):
        reg.stop(job.job_id)
    if job.state == "running":
        eta = job.eta_seconds()
        text = f"{job.unit} {len(job.history)}/{job.total_units}" + (f" · ETA {eta:.0f} s" if eta is not None else "")
        st.progress(job.fraction, text=text if job.history else (job.progress_note or "starting..."))
    if job.history:
        st.altair_chart(_curves(job.job_id, len(job.history), job), width="content")
    if job.done and job.record and job.record.metrics.test_acc is not None:
        m = job.record.metrics
        st.markdown(
            f"Test accuracy **{m.test_acc:.1%}** on {m.test_images or n_test:,} images, "
            f"train {m.train_acc:.1%} · saved as `{job.run_id}`"
        )
    if job.message:
        (st.error if job.state in ("failed", "diverged") else st.info)(job.message)


def refresh_interval(jobs: list[Job]) -> float | None:
    """Rerun about twice per row of the fastest running job, between 1 and 5 s; None when idle."""
    active = [j for j in jobs if not j.done]
    if not active:
        return None
    per_row = [j.history[-1]["seconds"] / len(j.history) for j in active if j.history]
    return min(5.0, max(1.0, min(per_row) / 2)) if per_row else 1.0


def show_jobs(n_test: int, limit: int = 6) -> None:
    jobs = sorted(registry().jobs(), key=lambda j: j.job_id, reverse=True)[:limit]
    if not jobs:
        st.caption("No runs started in this server session yet.")
        return

    had_active = {j.job_id for j in jobs if not j.done}

    @st.fragment(run_every=refresh_interval(jobs))
    def live() -> None:
        active = [j for j in registry().jobs() if not j.done]
        for job in sorted(active, key=lambda j: j.job_id, reverse=True):
            with st.container(border=True):
                show_job(job, n_test)
        if had_active - {j.job_id for j in active}:
            st.rerun()  # a job ended: redraw the page once, with it among the finished

    live()
    for job in jobs:
        if job.done and job.job_id not in had_active:
            with st.container(border=True):
                show_job(job, n_test)
