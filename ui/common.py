"""Streamlit glue shared by app.py and the pages: the settings in effect, cached core objects, sidebar.

Everything here is a thin wrapper: the logic lives in `core`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import streamlit as st

from core.access import redact
from core.config import TrainConfig, is_used
from core.data.load import load_splits
from core.data.splits import DataError, Splits
from core.engine.device import device_name, resolve_device
from core.jobs.supervisor import Supervisor
from core.runs.store import RunStore
from core.settings import Settings, SettingsError
from core.settings import current as current_settings


def framed(page: str) -> None:
    """Every page runs inside app.py's frame. Right after the server starts, a deep link such as
    /train reaches the page alone (Streamlit's legacy pages/ mode, until app.py has called
    st.navigation once): go through the frame, which then opens the page asked for."""
    if not st.session_state.get("_framed"):
        st.session_state["_goto"] = page
        st.switch_page("app.py")


def settings() -> Settings:
    """The settings in effect (core.settings); a bad SMALLDATA_* variable stops the page with its message."""
    try:
        return current_settings()
    except SettingsError as err:
        st.error(f"**The server's settings are wrong.** {err}. Fix the variable and restart the app.")
        st.stop()


@st.cache_resource(show_spinner="Loading the dataset (decoded once, then cached on disk)...", max_entries=8)
def get_splits(source: str, stamp: str = "", n_labeled: int | None = None) -> Splits:
    """stamp: an uploaded dataset's fingerprint, which its labels change (the cache then loads it again)."""
    return load_splits(source, n_labeled=n_labeled, cache_dir=settings().cache_dir, download=False)


def try_splits(n_labeled: int | None = None) -> Splits | None:
    """The dataset this tab works on (ui.datasets), or None after showing why it could not be loaded and how to
    fix it."""
    from ui.datasets import active  # ui.datasets imports this module

    try:
        return get_splits(*active(), n_labeled=n_labeled)
    except DataError as err:
        st.error(f"**The dataset could not be loaded.** {plain(err)}")
        return None


def queue_job(cfg: TrainConfig, **kw):
    """Queues a job of this person's on the dataset this tab works on (core checks both)."""
    from ui.datasets import active_source
    from ui.identity import me

    return registry().submit(cfg, by=me(), dataset=active_source(), **kw)


@st.cache_resource
def get_registry(runs_dir: str, dataset: str, max_jobs: int) -> Supervisor:
    """One supervisor per server process over the queue in the runs folder: runs happen in worker
    processes and survive reruns, page switches, reloads, tabs and server restarts."""
    return Supervisor(Path(runs_dir), dataset, max_running=max_jobs, cache_dir=settings().cache_dir)


def registry() -> Supervisor:
    s = settings()
    return get_registry(str(s.runs_dir), s.dataset, s.max_jobs)


def store() -> RunStore:
    return RunStore(settings().runs_dir)


@st.cache_data
def device_label() -> str:
    return device_name(resolve_device("auto"))


def server_paths() -> list[Path]:
    """Every folder of the server a page might name: its settings' folders, the checkout, the interpreter,
    the home and temporary folders."""
    s = settings()
    folders = [s.runs_dir, s.data_dir, s.cache_dir, s.weights_dir, s.launcher_dir, s.datasets_dir, Path(s.dataset)]
    folders += [Path(__file__).resolve().parents[1], Path(sys.prefix), Path.home(), Path(tempfile.gettempdir())]
    return [f for f in folders if str(f) not in ("", ".", "cifar10")]


def plain(text: str) -> str:
    """`text` as a page may show it: in class mode, no server path (core.access.redact)."""
    from ui.identity import class_mode  # ui.identity imports this module

    return redact(str(text), server_paths()) if class_mode() else str(text)


def show_sidebar() -> None:
    from ui.datasets import show_picker
    from ui.identity import class_mode, show_identity

    s = settings()
    with st.sidebar:
        show_identity()
        show_picker()
        st.markdown(f"**Device**: {device_label()}")
        if not class_mode():  # a class sees no server folder; the teacher's page shows the rest
            with st.expander("Settings in effect"):
                st.dataframe(s.rows(), hide_index=True,
                             column_config={"what": st.column_config.TextColumn(width="large")})  # fmt: skip
        jobs = registry().queue.jobs(active_only=True)
        running = [j for j in jobs if j.state in ("running", "stopping")]
        queued = [j for j in jobs if j.state == "queued"]
        if running or queued:
            st.info(f"{len(running)} run(s) training, {len(queued)} waiting")


def class_seeds(cfg: TrainConfig, splits: Splits, n: int) -> list[int]:
    """n seeds of cfg's recipe that nobody in the class has taken, now this student's (core.classroom.lesson)."""
    from core.classroom.lesson import take_seed
    from core.classroom.roster import Roster
    from ui.identity import me

    roster, used = Roster(settings().runs_dir), _used_seeds(cfg, splits.fingerprint)
    return [take_seed(roster, cfg, splits.fingerprint, me().name, used) for _ in range(n)]


def _used_seeds(cfg: TrainConfig, fingerprint: str) -> set[int]:
    """Seeds of this recipe in saved runs (made before the class took seeds from the roster)."""
    from core.views.board import recipe_key

    key = recipe_key(cfg, fingerprint)
    return {r.config.seed for r in store().runs() if recipe_key(r.config, r.dataset.get("fingerprint", "")) == key}


def shown_config(cfg: TrainConfig) -> dict:
    """A config as a page shows it (no server path in class mode)."""
    return {k: plain(v) if isinstance(v, str) else v for k, v in cfg.to_dict().items()}


def percent_columns(*names: str, **labels: str) -> dict:
    """st.dataframe column_config that shows these fractions as percentages (labels: a column's heading)."""
    return {n: st.column_config.NumberColumn(labels.get(n, n.replace("_", " ")), format="percent") for n in names}


def config_caption(cfg: TrainConfig) -> str:
    extra = f", {cfg.resolution}px, {cfg.finetune}" if cfg.weights else ""
    # A head of class centroids (plain or LDA) is computed, not trained: it has no epochs to show.
    work = f"{cfg.epochs} epochs" if is_used("epochs", cfg) else f"{cfg.classifier} head"
    return f"{cfg.method} · {cfg.arch}{extra} · {cfg.augment or 'none'} · {work} · seed {cfg.seed}"


def pixelated_images() -> None:
    """Browsers smooth enlarged images; 32x32 pictures must stay crisp (nearest-neighbour)."""
    st.html("<style>[data-testid='stImage'] img, [data-testid='stFullScreenFrame'] img "
            "{image-rendering: pixelated;}</style>")  # fmt: skip
