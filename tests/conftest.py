"""Test fixtures: a tiny synthetic folder dataset (3 classes told apart by colour, 32x32 PNGs) and a
tiny registered model, so that a training test takes a fraction of a second."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.plugins import TINY, tiny_cnn  # noqa: F401  (TINY: re-exported for the tests)

CLASSES = ("c0_red", "c1_green", "c2_blue")  # sorted order = channel order
# Worker processes (core.jobs.worker) import these too, so that they know the tiny model.
os.environ["SMALLDATA_PLUGINS"] = "tests.plugins"
# Step-time probes at their fewest steps, not averaged over 2 s each (core.methods.probes.for_a_while).
os.environ["SMALLDATA_TIMING_WINDOW"] = "0"
# The suite's own worker launcher (core.jobs.launcher), ended with the session, not the developer's.
os.environ["SMALLDATA_LAUNCHER_DIR"] = tempfile.mkdtemp(prefix="smalldata-launcher-")


def make_image(label: int, rng: np.random.Generator, size: int = 32) -> Image.Image:
    base = np.full((size, size, 3), 60, dtype=np.int16)
    base[..., label] = 200  # the class is the dominant channel: learnable in a few steps
    noise = rng.integers(-40, 40, size=(size, size, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def build_dataset(root: Path, labeled: int = 10, test: int = 10, unlabeled: int = 20, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    index = 0
    for split, per_class in (("labeled", labeled), ("test", test), ("unlabeled", unlabeled)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(per_class):
                make_image(label, rng).save(folder / f"img_{index:05d}.png")
                index += 1
    return root


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def splits(dataset_dir, tmp_path_factory):
    from core.data.load import load_splits

    return load_splits(dataset_dir, n_labeled=30, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> str:
    """A randomly initialised tiny_cnn saved as a .pth state_dict: a "pretrained" backbone offline."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.pth"
    torch.save(tiny_cnn().state_dict(), path)
    return str(path)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path, request):
    """No test reads the developer's ./runs, ./data or ./weights. The fast tier starts no worker
    launcher (core.jobs.launcher): importing torch in one more process is 5 s of CPU it does not need."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("SMALLDATA_LAUNCHER", "off")
    monkeypatch.setenv("SMALLDATA_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SMALLDATA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SMALLDATA_WEIGHTS_DIR", str(tmp_path / "weights"))


def _workers_under(folder: str) -> list[int]:
    """Pids of the job workers (core.jobs.worker) whose queue lies under folder."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"worker" in argv and b"--queue" in argv:
            queue = argv[argv.index(b"--queue") + 1].decode(errors="replace")
            if queue.startswith(folder) and proc.name.isdigit():
                pids.append(int(proc.name))
    return pids


@pytest.fixture(autouse=True)
def _end_workers_after_each_test(tmp_path_factory):
    """Workers outlive the server that started them, by design (core.jobs.supervisor), and a worker lingers a
    while for the next job. A test's workers end with it, so that no later test shares the two cores
    with a run nobody waits for."""
    yield
    if not Path("/proc").is_dir():
        return
    from core.jobs import launcher

    base = str(tmp_path_factory.getbasetemp())
    forked = [c["pid"] for c in launcher.children() if any(a.startswith(base) for a in c["argv"])]
    for pid in _workers_under(base) + forked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session", autouse=True)
def _end_the_launcher():
    yield
    from core.jobs import launcher

    launcher.stop()


@pytest.fixture(scope="session")
def app_cache(tmp_path_factory) -> Path:
    """One cache folder for every app test of a session: a timing job measures each step time once and keeps
    it there (core.methods.step_timings), as on a real server; a fresh folder per test would time ResNet-18
    again in every test."""
    return tmp_path_factory.mktemp("app-cache")
