"""Streamlit glue shared by app.py and the pages: settings from the environment, cached core objects, sidebar.

Everything here is a thin wrapper: the logic lives in `core`.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from core.config import TrainConfig
from core.data import DataError, Splits, dataset_from_env, default_cache_dir, load_splits
from core.device import device_name, resolve_device
from core.jobs import JobRegistry
from core.models import default_weights_dir
from core.store import RunStore, default_runs_dir


def framed(page: str) -> None:
    """Every page runs inside app.py's frame. Right after the server starts, a deep link such as
    /train reaches the page alone (Streamlit's legacy pages/ mode, until app.py has called
    st.navigation once): go through the frame, which then opens the page asked for."""
    if not st.session_state.get("_framed"):
        st.session_state["_goto"] = page
        st.switch_page("app.py")


def settings() -> dict[str, str]:
    return {
        "dataset": dataset_from_env(),
        "runs_dir": str(default_runs_dir()),
        "cache_dir": str(default_cache_dir()),
        "weights_dir": str(default_weights_dir()),
        "max_jobs": os.environ.get("SMALLDATA_MAX_JOBS", "1"),
    }


@st.cache_resource(show_spinner="Loading the dataset (decoded once, then cached on disk)...")
def get_splits(source: str, n_labeled: int | None = None) -> Splits:
    return load_splits(source, n_labeled=n_labeled, cache_dir=default_cache_dir(), download=False)


def try_splits(n_labeled: int | None = None) -> Splits | None:
    """The dataset in use, or None after showing why it could not be loaded and how to fix it."""
    try:
        return get_splits(dataset_from_env(), n_labeled)
    except DataError as err:
        st.error(f"**The dataset could not be loaded.** {err}")
        return None


@st.cache_resource
def get_registry(runs_dir: str, dataset: str, max_jobs: int) -> JobRegistry:
    """One supervisor per server process over the queue in the runs folder: runs happen in worker
    processes and survive reruns, page switches, reloads, tabs and server restarts."""
    return JobRegistry(Path(runs_dir), dataset, max_running=max_jobs, cache_dir=default_cache_dir())


def registry() -> JobRegistry:
    s = settings()
    try:
        max_jobs = max(1, int(s["max_jobs"]))
    except ValueError:
        max_jobs = 1
    return get_registry(s["runs_dir"], s["dataset"], max_jobs)


def store() -> RunStore:
    return RunStore(Path(settings()["runs_dir"]))


@st.cache_data
def device_label() -> str:
    return device_name(resolve_device("auto"))


def show_sidebar() -> None:
    s = settings()
    with st.sidebar:
        st.caption("Settings (from the environment)")
        st.markdown(
            f"- **Dataset** (`SMALLDATA_DATASET`): `{s['dataset']}`\n"
            f"- **Runs** (`SMALLDATA_RUNS_DIR`): `{s['runs_dir']}`\n"
            f"- **Weights** (`SMALLDATA_WEIGHTS_DIR`): `{s['weights_dir']}`\n"
            f"- **Device**: {device_label()}"
        )
        jobs = registry().queue.jobs(active_only=True)
        running = [j for j in jobs if j.state in ("running", "stopping")]
        queued = [j for j in jobs if j.state == "queued"]
        if running or queued:
            st.info(f"{len(running)} run(s) training, {len(queued)} waiting")


def config_caption(cfg: TrainConfig) -> str:
    extra = f", {cfg.resolution}px, {cfg.finetune}" if cfg.weights else ""
    return f"{cfg.method} · {cfg.arch}{extra} · {cfg.augment or 'none'} · {cfg.epochs} epochs · seed {cfg.seed}"


def pixelated_images() -> None:
    """Browsers smooth enlarged images; 32x32 pictures must stay crisp (nearest-neighbour)."""
    st.html("<style>[data-testid='stImage'] img, [data-testid='stFullScreenFrame'] img "
            "{image-rendering: pixelated;}</style>")  # fmt: skip
