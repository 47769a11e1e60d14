"""The Train page's list of jobs (from the queue in the runs folder): your own first, finished ones drawn
once, running and queued ones in a fragment that reruns only as often as their rows arrive (every 8 to 15 s;
every second while one stops); in class mode the class's jobs below, as a compact list with each
one's place in the fair queue."""

from __future__ import annotations

import time
from statistics import median

import streamlit as st

from core.access import PermissionDenied
from core.config import TrainConfig
from core.data.splits import Splits
from core.jobs.job import LIMITED_KINDS
from core.jobs.progress import job_progress
from core.jobs.queue import JobInfo
from core.jobs.schedule import expected_wait
from core.methods.step_timings import EstimateUnavailable, estimate_seconds, final_pass_seconds
from core.runs.evaluate import can_evaluate
from core.runs.record import RunRecord
from core.runs.store import StoreError
from core.views.charts import history_frame, learning_curves
from ui.common import config_caption, get_splits, plain, registry, settings
from ui.identity import class_mode, me


def stop(job_id: int) -> None:
    """Stop's callback: core refuses another's job (PermissionDenied); the page says so instead of a traceback."""
    try:
        registry().stop(job_id, me())
    except PermissionDenied as err:
        st.session_state["_refused"] = str(err)


def show_refusal() -> None:
    if refused := st.session_state.pop("_refused", None):
        st.error(refused)


@st.cache_data(max_entries=64, show_spinner=False)
def _curves(job_id: int, rows: int, _job: JobInfo) -> dict:
    """The learning-curve chart of a job with `rows` rows, as its Vega-Lite spec: built and validated only when a
    row arrives, not at every rerun (Altair's to_dict took 17 ms of the server's CPU per rerun)."""
    record = RunRecord(run_id=f"job-{job_id}", status="finished", config=_job.cfg, history=list(_job.history[:rows]))
    return learning_curves(history_frame([record]), height=160, width=200).to_dict()  # three panels within a card


def _saved(run_id: str) -> RunRecord | None:
    try:  # the file's time is in the key: an evaluation (core.runs.evaluate) rewrites the record
        return _load(run_id, registry().store.record_path(run_id).stat().st_mtime_ns)
    except (StoreError, OSError):
        return None


@st.cache_data(max_entries=64, show_spinner=False)
def _load(run_id: str, mtime_ns: int) -> RunRecord | None:
    try:
        return registry().store.load(run_id)
    except StoreError:
        return None


CHART_S = 30.0  # the live learning curve redraws at most this often (chart_rows)


def chart_rows(shown: tuple[int, float] | None, rows: int, now: float, done: bool) -> tuple[int, float]:
    """(rows, when): how many rows the live learning curve draws, and since when. It redraws with every row
    at most every CHART_S seconds (and when the job ends); in between, the same chart again, which neither
    the server nor the browser redraws. Measured with the Train page open in Chromium on the same 2 cores
    while a run trained (40 s, 5 reruns): the server's CPU 1.23 s and Chromium's 1.74 s with a chart redrawn
    at every rerun, 0.66 and 1.30 s with the same chart each time, 0.97 and 0.85 s with no chart."""
    if shown is None or done or rows < shown[0] or now - shown[1] >= CHART_S:
        return rows, now
    return shown


def show_job(job: JobInfo, n_test: int, place: str = "") -> None:
    head = st.columns([4, 1])
    what = {
        "evaluate": f"evaluate `{job.run_id}` on the full test set",
        "view": f"the {job.request.get('what')} of {job.request.get('label')} (Why it works)",
        "timing": f"step times for the estimate of {config_caption(job.cfg)}",
    }.get(job.kind, config_caption(job.cfg))
    head[0].markdown(f"**Job {job.job_id}** · {what} · **{job.state}**")
    if job.state == "queued":
        head[0].caption(f"Waiting: {place or 'in the queue'}")
    if job.state in ("queued", "running") and me().may_change(job.owner):
        # A callback: the stop is asked before the rerun draws anything, so this very rerun shows "stopping".
        head[1].button("Stop", key=f"stop_{job.job_id}", icon=":material/stop:", on_click=stop, args=(job.job_id,))
    if job.state == "stopping":
        st.caption("Stopping: the run ends within a second or two and is saved as stopped, with its last test check.")
    if job.state == "running":
        progress = job_progress(job, final_pass_seconds(job.cfg, n_test, settings().cache_dir), start_estimate(job))
        st.progress(progress.fraction, text=progress.text)
    if job.history and job.kind == "train":
        key = f"_chart_rows_{job.job_id}"
        st.session_state[key] = chart_rows(st.session_state.get(key), len(job.history), time.monotonic(), job.done)
        st.vega_lite_chart(spec=_curves(job.job_id, st.session_state[key][0], job), width="content")
        if job.cfg.eval_every and any(row.get("test_acc") is not None for row in job.history):
            st.caption(f"test_acc: a check every {job.cfg.eval_every} {job.history[-1].get('unit', 'epoch')}s on "
                       f"{job.cfg.eval_subset:,} test images; the full test pass comes at the end.")  # fmt: skip
    record = _saved(job.run_id) if job.done and job.run_id and job.kind == "train" else None
    if record is not None and record.metrics.test_acc is not None:
        m = record.metrics
        check = " (the last check before Stop: evaluate it in full from the Compare page)" if m.partial else ""
        if m.cross_validated:
            folds = len(m.cv_accuracies)
            scored = f"Cross-validated accuracy **{m.test_acc:.1%} ± {m.cv_std:.1%}** over {folds} folds"
        else:
            scored = f"Test accuracy **{m.test_acc:.1%}** on {m.test_images or n_test:,} images{check}"
        st.markdown(f"{scored}, train {m.train_acc:.1%} · saved as `{job.run_id}`")
    if job.message:
        (st.error if job.state in ("failed", "diverged", "interrupted") else st.info)(plain(job.message))


@st.cache_data(max_entries=200, show_spinner=False)
def _estimate_at_start(job_id: int, cfg_json: str, source: str) -> float:
    """A run's estimate as first asked while it runs (at its Start), on the dataset it runs on: kept, so that
    the features it has cached since do not shrink it (cached features cost nothing in the next run's
    estimate). Raises where there is none yet: an exception is not cached, so it is asked again."""
    return estimate_seconds(TrainConfig.from_json(cfg_json), get_splits(source), cache_dir=settings().cache_dir,
                            busy=True)  # fmt: skip


def start_estimate(job: JobInfo) -> float | None:
    if job.kind != "train":
        return None
    try:
        return _estimate_at_start(job.job_id, job.cfg.to_json(), job.dataset)
    except Exception:  # unknown step times, a dataset gone: no ETA before the first row rather than a wrong one
        return None


REFRESH_S = 8.0  # the live job list's shortest interval between reruns, and the one in a phase without rows
LONGEST_S = 15.0  # the longest: the bar and the ETA still move
STOPPING_S = 1.0  # while a job stops: it ends within a second or two, and the page shows it saved at once


def refresh_interval(jobs: list[JobInfo]) -> float | None:
    """Rerun about once per row of the fastest running job, between 8 and 15 s, every 8 s in a phase
    without rows (features, the final test pass), every second while a job stops; None when idle.

    Every rerun costs the CPU that trains: with the Train page open in Chromium on the same 2 cores, a
    rerun cost the server about 55 ms and Chromium about 125 ms (most of it the page's own rerun, not the
    chart), and with a rerun per 1.7 s the notebook's scratch run took 1.22x its CLI time. At one per 4 s,
    the notebook's transfer run (a row per 0.7 s) still took 1.22x (median of 3 interleaved rounds,
    benchmarks/app_bench.py), the server and Chromium spending 9.1 CPU-s meanwhile; at one per 8 s, 5.0
    CPU-s. A stopped run must still show at once, saved with its last check: hence the second-long
    interval while one stops (live() switches to it)."""
    active = [j for j in jobs if not j.done]
    if not active:
        return None
    if any(j.state == "stopping" for j in active):
        return STOPPING_S
    per_row = [j.history[-1]["seconds"] / len(j.history) for j in active if j.history]
    return min(LONGEST_S, max(REFRESH_S, min(per_row))) if per_row else REFRESH_S


def _job_seconds(job: JobInfo, splits: Splits, typical: float) -> float:
    """How long a job takes: its estimate from measured step times, else what finished jobs took."""
    if job.kind == "train":
        try:
            return estimate_seconds(job.cfg, splits, cache_dir=settings().cache_dir, busy=True)
        except (EstimateUnavailable, ValueError):
            pass
    return typical if job.kind in LIMITED_KINDS else 10.0  # a run, or a page's view or timing (seconds)


def waits(splits: Splits) -> dict[int, str]:
    """Each queued job's place in the fair queue and the expected wait, as text."""
    reg = registry()
    active, places = reg.queue.jobs(active_only=True, limit=1000), reg.queue.positions()
    finished = [j.ended - j.started for j in reg.jobs(limit=100) if j.kind == "train" and j.ended and j.started]
    typical = median(finished) if finished else 60.0
    queued = sorted((j for j in active if j.job_id in places), key=lambda j: places[j.job_id])
    ahead = [_job_seconds(j, splits, typical) for j in queued]
    running = [j for j in active if j.state in ("running", "stopping")]
    left = [
        max(0.0, _job_seconds(j, splits, typical) - (j.history[-1]["seconds"] if j.history else 0)) for j in running
    ]
    out = {}
    for j in queued:
        wait = expected_wait(places[j.job_id], ahead, left, reg.max_running)
        out[j.job_id] = f"place {places[j.job_id]} of {len(queued)} in the queue, about {_minutes(wait)} to wait"
    return out


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{max(1, round(seconds))} s"


def show_jobs(splits: Splits, limit: int = 6) -> None:
    """Your jobs (in single-user mode, every job): live while they run."""
    n_test = len(splits.test_y)
    owner = me().name if class_mode() else None
    jobs = registry().queue.jobs(limit=limit, owner=owner)
    if not jobs:
        st.caption("No runs of yours yet." if owner else "No runs in the queue yet.")
        return
    had_active = {j.job_id for j in jobs if not j.done}
    interval = refresh_interval(jobs)

    @st.fragment(run_every=interval)
    def live() -> None:
        active = [j for j in registry().queue.jobs(active_only=True, owner=owner) if j.job_id in had_active]
        if interval != STOPPING_S and any(j.state == "stopping" for j in active):
            st.rerun()  # Stop was pressed: the whole page again, to follow the stop every second (refresh_interval)
        places = waits(splits) if any(j.state == "queued" for j in active) else {}
        for job in active:
            with st.container(border=True):
                show_job(job, n_test, places.get(job.job_id, ""))
        if had_active - {j.job_id for j in active}:
            st.rerun()  # a job ended: redraw the page once, with it among the finished

    live()
    for job in jobs:
        if job.done and job.job_id not in had_active:
            with st.container(border=True):
                show_job(job, n_test)


def show_class_jobs() -> None:
    """The class's jobs in flight, one line each: owner, what, state, place in the queue."""
    import pandas as pd

    reg = registry()
    places = reg.queue.positions()
    active = sorted(reg.queue.jobs(active_only=True, limit=1000), key=lambda j: places.get(j.job_id, 0))
    if not active:
        st.caption("Nothing of the class's is running or waiting.")
        return
    rows = [{"owner": j.owner, "what": config_caption(j.cfg) if j.kind == "train" else j.kind, "state": j.state,
             "place": str(places[j.job_id]) if j.job_id in places else "—"} for j in active]  # fmt: skip
    running = sum(j.state != "queued" for j in active)
    st.caption(f"{running} running on {reg.max_running} worker slot(s), {len(active) - running} waiting, in the fair "
               "order: the next free slot goes to whoever has the fewest jobs running and waited longest.")  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={"place": st.column_config.TextColumn(
        "place", help="In the queue: 1 starts next")})  # fmt: skip


def offer_evaluation(runs: list[RunRecord]) -> None:
    """Runs stopped before their final test pass: their partial accuracy, and "Evaluate now", which
    queues each full pass as a job (core.runs.evaluate) and follows its progress here."""
    reg = registry()
    pending = {j.run_id: j.job_id for j in reg.queue.jobs(active_only=True) if j.kind == "evaluate"}
    runs = [r for r in runs if me().may_change(r.owner)]  # another's run is theirs to evaluate
    if pending:
        _follow_evaluations(sorted(pending.values()))
    waiting = [r for r in runs if r.metrics.partial and r.run_id not in pending]
    if not waiting:
        return
    able = [r for r in waiting if can_evaluate(reg.store, r)]
    names = ", ".join(f"`{r.run_id}`" for r in waiting[:4]) + (" ..." if len(waiting) > 4 else "")
    st.warning(
        f"{len(waiting)} run(s) stopped before their final test pass: their test accuracy is the last periodic "
        f"check on a subset of the test set ({names})."
    )
    if len(able) < len(waiting):
        st.caption(f"{len(waiting) - len(able)} of them kept no weights (imported, or saved before runs kept them) "
                   "and cannot be evaluated again.")  # fmt: skip
    if able and st.button(
        f"Evaluate {len(able)} now on the full test set", key="evaluate", icon=":material/fact_check:"
    ):
        try:
            for run in able:
                reg.evaluate(run.run_id, by=me())
        except PermissionDenied as err:
            st.session_state["_refused"] = str(err)
        st.rerun()


@st.fragment(run_every=2)
def _follow_evaluations(job_ids: list[int]) -> None:
    jobs = [j for j in (registry().get(i) for i in job_ids) if j is not None]
    if all(j.done for j in jobs):
        st.rerun()  # the whole page, with the new metrics
    for job in jobs:
        text = job.note if job.state == "running" and job.note else f"waiting for a worker ({job.state})"
        st.progress(min(1.0, job.note_fraction), text=f"Evaluating `{job.run_id}`: {text}")
