"""Preparing a lesson: `python -m core prepare` warms the step times and the frozen features a lesson reads, says
how long first, and leaves nothing to do the second time; with runs, the seeds are saved as any run."""

from __future__ import annotations

import shutil

import pytest

from core.cli import main
from core.data.load import load_splits
from core.methods.registry import preset
from core.methods.step_timings import MeasuredTiming, estimate_seconds
from core.runs.prepare import plan, prepare, total_seconds
from core.runs.store import RunStore
from core.views.notebook import experiments
from tests.conftest import TINY
from tests.test_app import APP, app_env, local_backbone  # noqa: F401  (fixtures)


def test_prepare_warms_every_cache_of_the_notebook_lesson_once(dataset_dir, checkpoint, tmp_path, monkeypatch, capsys):
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(checkpoint, weights / f"{TINY}_pretrained.pth")  # the weights folder's backbone, as the app finds it
    monkeypatch.setenv("SMALLDATA_WEIGHTS_DIR", str(weights))
    args = ["prepare", "--dataset", str(dataset_dir), "--cache-dir", str(tmp_path / "c"), "--runs-dir",
            str(tmp_path / "runs")]  # fmt: skip
    assert main([*args, "--dry-run"]) == 0
    said = capsys.readouterr().err
    assert "step times of Label spreading" in said and "dry run: nothing done" in said
    assert main(args) == 0
    said = capsys.readouterr().err
    assert "the lesson is ready" in said and "frozen features of Label spreading (seed 0): cached" in said
    assert "(seed 1)" not in said  # the seeds share every feature file: one step warms them for all three

    splits = load_splits(dataset_dir, cache_dir=tmp_path / "c")
    semi = experiments(TINY, str(weights / f"{TINY}_pretrained.pth"), 30)["semi"]
    for seed in (0, 1, 2):
        timing = MeasuredTiming(semi.with_(seed=seed), splits, tmp_path / "c", busy=True)
        assert all(timing.features_cached(semi.with_(seed=seed), s) for s in ("labeled", "test", "unlabeled"))
    for cfg in experiments(TINY, str(weights / f"{TINY}_pretrained.pth"), 30).values():
        estimate_seconds(cfg, splits, tmp_path / "c", busy=True)  # measured: the Train page's estimate is at hand
    assert main(args) == 0 and "nothing to do: the lesson is ready" in capsys.readouterr().err


def test_a_features_step_per_seed_only_for_what_the_seed_does_not_share(splits, checkpoint, tmp_path):
    plain = preset("transfer", "recommended", arch=TINY, weights=checkpoint, resolution=32, device="cpu")
    steps = plan({"plain": plain}, splits, tmp_path / "c", seeds=(0, 1, 2))
    assert [(s.kind, s.cfg.seed) for s in steps if s.kind == "features"] == [("features", 0)]
    augmented = plain.with_(augment="flip_crop", classifier="trained")  # augmented views: each seed its own
    steps = plan({"augmented": augmented}, splits, tmp_path / "c", seeds=(0, 1, 2))
    assert [s.cfg.seed for s in steps if s.kind == "features"] == [0, 1, 2]
    prepare([s for s in steps if s.kind == "features"][:1], splits, tmp_path / "c")  # seed 0: test set + its views
    assert [s.cfg.seed for s in plan({"augmented": augmented}, splits, tmp_path / "c", seeds=(0, 1, 2))
            if s.kind == "features"] == [1, 2]  # fmt: skip


def test_prepare_can_pre_run_the_seeds_and_says_how_long(splits, tmp_path):
    cfg = preset("scratch", "notebook", arch=TINY, epochs=2, batch_size=10, lr=1e-3, n_labeled=30, device="cpu")
    store = RunStore(tmp_path / "runs")
    steps = plan({"tiny": cfg}, splits, tmp_path / "c", store, (0, 1), run=True)
    assert [s.kind for s in steps] == ["timings", "run", "run"] and total_seconds(steps) is None  # times unknown
    prepare(steps[:1], splits, tmp_path / "c", store)
    steps = plan({"tiny": cfg}, splits, tmp_path / "c", store, (0, 1), run=True)
    assert [s.kind for s in steps] == ["run", "run"] and total_seconds(steps) > 0
    notes = []
    done = prepare(steps, splits, tmp_path / "c", store, progress=lambda f, t: notes.append(f))
    assert len(done) == 2 and sorted(r.config.seed for r in store.runs()) == [0, 1] and notes[-1] == 1.0
    assert plan({"tiny": cfg}, splits, tmp_path / "c", store, (0, 1), run=True) == []


@pytest.mark.slow  # a worker process does the preparing
def test_the_notebook_page_prepares_the_lesson_with_one_button(app_env, local_backbone):  # noqa: F811
    from streamlit.testing.v1 import AppTest

    from ui.common import registry

    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/notebook.py").run()
    assert any("Left to do:" in m.value for m in at.markdown)
    at.button(key="prepare").click().run()
    assert not at.exception, at.exception
    (job,) = [j for j in registry().jobs() if j.kind == "prepare"]
    assert registry().wait(timeout=180)
    job = registry().get(job.job_id)
    assert job.state == "finished" and "the lesson is ready" in job.message, job.message
    at.run()
    assert any("The lesson is ready" in s.value for s in at.success)
    assert at.button(key="prepare").disabled
