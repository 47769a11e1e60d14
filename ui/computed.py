"""Views a worker computes (core.views.computed), on a page: shown at once when on disk; otherwise the
job's progress and a Stop while it runs, or a "Compute (about N s)" button. The server only reads files
and the queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st

from core.data.splits import Splits
from core.jobs.queue import JobInfo
from core.methods.step_timings import known_per_image
from core.views.computed import ViewRequest, compute_seconds, read_file, result_path
from ui.common import plain, queue_job, registry, settings
from ui.identity import me
from ui.jobs_view import stop


@st.cache_data(max_entries=16, show_spinner=False)
def _read(path: str, mtime_ns: int) -> dict[str, Any] | None:
    """The result file, read once per version of it (mtime_ns is in the key)."""
    return read_file(Path(path))


def read(request: ViewRequest, splits: Splits) -> dict[str, Any] | None:
    path = result_path(settings().cache_dir, request, splits.fingerprint)
    try:
        return _read(str(path), path.stat().st_mtime_ns)
    except OSError:
        return None


def _jobs_of(requests: list[ViewRequest]) -> list[JobInfo]:
    """The newest job of each request (None where none was queued)."""
    wanted = {json.dumps(r.to_dict(), sort_keys=True) for r in requests}
    jobs = registry().jobs(limit=100)
    return [j for j in jobs if j.kind == "view" and json.dumps(j.request, sort_keys=True) in wanted]


def show_views(requests: list[ViewRequest], splits: Splits, *, key: str, what: str) -> list[dict[str, Any] | None]:
    """The results of requests, in order; where any is missing, the state of its jobs and the button."""
    results = [read(r, splits) for r in requests]
    missing = [r for r, res in zip(requests, results, strict=True) if res is None]
    if not missing:
        return results
    jobs = _jobs_of(missing)
    active = [j for j in jobs if not j.done]
    if active:
        _follow([j.job_id for j in active], what)
        return results
    latest = jobs[0] if jobs else None
    if latest is not None and latest.state in ("failed", "interrupted"):
        st.error(f"Computing {what} {latest.state}: {plain(latest.message)}")
    seconds = sum(compute_seconds(r, known_per_image(r.config(), settings().cache_dir), len(splits.labeled_y))
                  for r in missing)  # fmt: skip
    if st.button(f"Compute {what} (about {seconds:.0f} s)", key=f"compute_{key}", icon=":material/calculate:",
                 help="A worker computes it, as it trains runs: the server stays free. Then it is saved and "
                 "shown at once, to everyone."):  # fmt: skip
        replays = {r.map_request() for r in missing if r.what == "replay"}
        for r in [r for r in missing if r not in replays]:  # a replay's job draws its map too
            queue_job(r.config(), kind="view", request=r.to_dict())
        st.rerun()
    return results


@st.fragment(run_every=1.0)
def _follow(job_ids: list[int], what: str) -> None:
    reg = registry()
    jobs = [j for j in (reg.get(i) for i in job_ids) if j is not None]
    if all(j.done for j in jobs):
        st.rerun()  # the whole page, with the results
    for job in jobs:
        if job.state == "queued":
            place = reg.queue_position(job.job_id)
            text = f"waiting for a worker (position {place} in the queue)"
        else:
            text = job.note or "starting a worker..."
        cols = st.columns([5, 1])
        cols[0].progress(min(1.0, job.note_fraction), text=f"Computing {what}: {text}")
        if job.state in ("queued", "running") and me().may_change(job.owner):
            cols[1].button("Stop", key=f"stop_view_{job.job_id}", icon=":material/stop:", on_click=stop,
                           args=(job.job_id,))  # fmt: skip
