"""The Train page's time estimate: arithmetic over step times a worker measured (core.methods.step_timings),
never a measurement in the server. Where a time is not known yet, a timing job measures it, one at a time,
and the estimate appears when it is done."""

from __future__ import annotations

import streamlit as st

from core.config import TrainConfig
from core.data.splits import Splits
from core.methods.step_timings import EstimateUnavailable, estimate_seconds
from ui.common import queue_job, registry, settings


def show_estimate(cfg: TrainConfig, splits: Splits) -> None:
    try:
        seconds = estimate_seconds(cfg, splits, cache_dir=settings().cache_dir, busy=True)  # never measures here
    except EstimateUnavailable:
        _measuring(cfg)
        return
    except Exception as err:  # an estimate must never block a run
        st.caption(f"No estimate ({type(err).__name__})")
        return
    st.metric(
        "Estimated time", f"≈ {seconds / 60:.1f} min" if seconds > 90 else f"≈ {seconds:.0f} s",
        help="Step times measured once on this device by a worker, times the run's steps; features already "
        "cached cost nothing. The benchmark checks it against real runs.",
    )  # fmt: skip


def _measuring(cfg: TrainConfig) -> None:
    """One timing job at a time: when it ends, the page asks again (and queues the next one if still needed)."""
    reg = registry()
    pending = [j for j in reg.queue.jobs(active_only=True) if j.kind == "timing"]
    last = next((j for j in reg.jobs(limit=50) if j.kind == "timing" and j.cfg == cfg), None)
    if not pending and last is not None and last.state not in ("finished", "stopped"):
        st.caption(f"No estimate: measuring its step times {last.state} ({last.message})")
        return  # not again and again: a new config, or a reload, asks once more
    if not pending:
        pending = [queue_job(cfg, kind="timing")]
    _follow(pending[0].job_id)


@st.fragment(run_every=2.0)
def _follow(job_id: int) -> None:
    reg = registry()
    job = reg.get(job_id)
    if job is None or job.done:
        st.rerun()
    where = "measuring step times" if job.state == "running" else f"queued ({reg.queue_position(job_id)} in line)"
    st.caption(f"Estimate: a worker is {where}; it appears here when done.")
