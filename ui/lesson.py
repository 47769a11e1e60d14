"""Prepare a lesson, from the notebook page (teachers): what is left and how long, one button that queues it as
a job (a worker warms the caches: core.runs.prepare), and that job's progress."""

from __future__ import annotations

import streamlit as st

from core.config import TrainConfig
from core.data.splits import Splits
from core.runs.prepare import plan, total_seconds
from core.views.notebook import SEEDS
from ui.common import queue_job, registry, settings, store


def show_prepare(recipes: dict[str, TrainConfig], splits: Splits) -> None:
    with st.expander("Prepare this lesson before the class (warm every cache it needs)"):
        pre_run = st.checkbox(f"Also run the seeds {list(SEEDS)} not saved yet, so that the results are there",
                              key="prep_run")  # fmt: skip
        steps = plan(recipes, splits, settings().cache_dir, store(), SEEDS, pre_run)  # file checks only: instant
        total = total_seconds(steps)
        active = [j for j in registry().queue.jobs(active_only=True) if j.kind == "prepare"]
        if not steps:
            st.success("The lesson is ready: every step time, feature and run it needs is cached here.")
        else:
            when = f"about **{total / 60:.1f} min**" if total is not None else "a time known once the step times are in"
            st.markdown(f"Left to do: {len(steps)} step(s), {when}. Then every Start of the lesson begins at once "
                        "(the `python -m core prepare` command does the same).")  # fmt: skip
            st.caption(" · ".join(s.label for s in steps[:12]) + (" · ..." if len(steps) > 12 else ""))
        if st.button("Prepare the lesson", key="prepare", disabled=not steps or bool(active), icon=":material/bolt:"):
            request = {"recipes": {name: cfg.to_dict() for name, cfg in recipes.items()}, "seeds": list(SEEDS),
                       "run": pre_run}  # fmt: skip
            active = [queue_job(next(iter(recipes.values())), kind="prepare", request=request)]
        if active:
            _follow(active[0].job_id)


@st.fragment(run_every=2.0)
def _follow(job_id: int) -> None:
    job = registry().get(job_id)
    if job is None or job.done:
        st.rerun()
    st.progress(min(1.0, job.note_fraction), text=job.note or f"preparing ({job.state})")
