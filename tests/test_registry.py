"""A new method is one object and one `register` call: validate, the CLI and the Train page see it
with no edit to core. The toy method lives in this file only."""

import json

import pytest
import torch

from core.config import ConfigError, TrainConfig
from core.methods.base import Method, Outcome, RunContext, finish
from core.methods.registry import get_method, list_methods, preset, register, unregister, validate
from core.runs.train import fit
from tests.conftest import TINY


class NearestMean(Method):
    """Classifies by the nearest class mean of the raw pixels: no training at all."""

    name = "nearest_mean"
    summary = "Nearest class mean of the pixels (a toy method registered by a test)."
    help = "Each class is its mean image; a test image gets the class of the closest mean."
    unit = "step"
    fields = ("arch", "rounds")
    presets = {"plain": dict(arch=TINY, rounds=2)}

    def check(self, cfg: TrainConfig) -> None:
        if cfg.rounds > 50:
            raise ConfigError(f"rounds={cfg.rounds}: nearest_mean takes at most 50")

    def total_units(self, cfg: TrainConfig) -> int:
        return cfg.rounds

    def estimate(self, cfg, sizes, timing) -> float:
        return 0.01 * sizes.test

    def run(self, ctx: RunContext) -> Outcome:
        s = ctx.splits
        flat = s.labeled_x.flatten(1).float()
        means = torch.stack([flat[s.labeled_y == c].mean(0) for c in range(ctx.n_classes)])
        history = []
        for i in range(1, ctx.cfg.rounds + 1):
            row = {"index": i, "unit": "step", "train_loss": 0.0, "train_acc": 1.0, "lr": 0.0, "seconds": 0.0,
                   "test_acc": None}  # fmt: skip
            history.append(row)
            ctx.emit(row)

        def forward(x: torch.Tensor) -> torch.Tensor:
            return -torch.cdist(x.flatten(1) * 255, means)

        return finish(ctx, "finished", "", history, forward)


@pytest.fixture
def toy():
    method = register(NearestMean())
    yield method
    unregister(method.name)


def test_a_registered_method_is_validated_and_runs(toy, splits):
    assert "nearest_mean" in list_methods() and get_method("nearest_mean") is toy
    cfg = TrainConfig(method="nearest_mean", arch=TINY, rounds=3)
    assert validate(cfg) is cfg
    with pytest.raises(ConfigError, match="at most 50"):
        validate(cfg.with_(rounds=60))
    rows = []
    record = fit(cfg, splits, on_row=rows.append)
    assert record.status == "finished" and record.unit == "step" and record.total_units == 3 and len(rows) == 3
    assert record.metrics.test_acc > 0.9  # colour classes: the mean image is enough


def test_unregistered_methods_are_refused():
    with pytest.raises(ConfigError, match="nearest_mean"):
        validate(TrainConfig(method="nearest_mean"))


def test_the_cli_offers_a_registered_method(toy, dataset_dir, tmp_path, capsys):
    from core.cli import main

    code = main(["train", "--method", "nearest_mean", "--rounds", "4", "--n-labeled", "30", "--dataset",
                 str(dataset_dir), "--runs-dir", str(tmp_path / "runs"), "--json"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads(out.out)
    assert summary["method"] == "nearest_mean" and summary["config"]["preset"] == "plain"
    assert summary["steps"] == 4 and "step    4/4" in out.err


def open_toy_page(dataset_dir, tmp_path, monkeypatch, app_cache):
    from tests.test_app import open_page

    monkeypatch.setenv("SMALLDATA_DATASET", str(dataset_dir))
    monkeypatch.setenv("SMALLDATA_CACHE_DIR", str(app_cache))
    monkeypatch.setenv("SMALLDATA_PLUGINS", "tests.plugins,tests.toy_plugin")  # the worker process learns it too
    import streamlit as st

    st.cache_resource.clear()
    at = open_page("pages/train.py")
    assert "nearest_mean" in at.radio(key="method").options
    at.radio(key="method").set_value("nearest_mean").run()
    assert not at.exception, at.exception
    assert at.number_input(key="rounds_nearest_mean_plain").value == 2
    assert "Learning rate" not in {w.label for w in at.number_input}  # it declares no optimisation fields
    assert not at.button(key="start").disabled
    return at


def test_the_train_page_offers_a_registered_method(toy, dataset_dir, tmp_path, monkeypatch, app_cache):
    open_toy_page(dataset_dir, tmp_path, monkeypatch, app_cache)


@pytest.mark.slow
def test_a_registered_method_runs_from_the_train_page_in_a_worker(toy, dataset_dir, tmp_path, monkeypatch, app_cache):
    at = open_toy_page(dataset_dir, tmp_path, monkeypatch, app_cache)
    at.button(key="start").click().run()
    from ui.common import registry

    assert registry().wait(timeout=60)
    job = registry().jobs()[0]
    assert job.state == "finished", job.message
    record = registry().store.load(job.run_id)
    assert record.method == "nearest_mean" and record.unit == "step" and len(record.history) == 2


def test_a_whitened_stem_needs_a_patch_stem_and_random_weights(checkpoint):
    base = preset("scratch", "recommended")
    assert base.arch == "convnet_cifar" and base.whiten_stem
    with pytest.raises(ConfigError, match="whiten_stem=True needs a 2x2 patch stem .*resnet18_cifar"):
        validate(base.with_(arch="resnet18_cifar"))
    with pytest.raises(ConfigError, match="overwrite the first layer"):
        validate(preset("transfer", "recommended", arch="convnet_cifar", weights=checkpoint, whiten_stem=True))
    # Another network through the preset drops the whitening that went with the preset's network, unless asked for.
    assert not preset("scratch", "recommended", arch="resnet18_cifar").whiten_stem
    with pytest.raises(ConfigError, match="whiten_stem"):
        preset("scratch", "recommended", arch="resnet18_cifar", whiten_stem=True)


class CountingTiming:
    """A Timing with round numbers, which writes down what each estimate asked it."""

    def __init__(self) -> None:
        self.heads, self.graphs, self.steps = [], [], []

    def train_step(self, arch, resolution, batch):
        self.steps.append(batch)
        return 0.0 if batch < 50 else 0.5

    def per_image(self, arch, resolution):
        return 0.01

    def features_cached(self, cfg, what):
        return what != "unlabeled"

    def head_step(self, dim):
        self.heads.append(dim)
        return 0.001

    def graph(self, n, dim, k):
        self.graphs.append((n, dim, k))
        return 7.0


def test_semi_estimates_count_each_round_on_its_own_pool():
    from core.methods.base import DataSizes
    from core.models import feature_dim

    sizes = DataSizes(labeled=100, test=1000, unlabeled=5000)
    # self-training: round r refits on the 100 labeled images plus r * 40 per class (core.methods.selftrain.curriculum)
    cfg = TrainConfig(method="selftrain", arch=TINY, weights="x.pth", epochs=2, batch_size=100, rounds=3,
                      per_class=40, n_unlabeled=2000, flip_features=False)  # fmt: skip
    timing = CountingTiming()
    batches = sum(-(-(100 + r * 400) // 100) for r in (1, 2, 3)) + 1  # + round 0, the probe on 100
    expected = 2000 * 0.01 + 2 * batches * 0.001
    assert get_method("selftrain").estimate(cfg, sizes, timing) == pytest.approx(expected)
    assert set(timing.heads) == {feature_dim(TINY)}
    # label spreading adds the graph over the labeled and pooled images, with the config's k
    timing = CountingTiming()
    spread = cfg.with_(method="labelspread", rounds=1, knn=7)
    batches = -(-(100 + 400) // 100) + 1
    assert get_method("labelspread").estimate(spread, sizes, timing) == pytest.approx(20 + 2 * batches * 0.001 + 7)
    assert timing.graphs == [(2100, feature_dim(TINY), 7)]


def test_spreadtune_estimate_counts_the_teacher_and_the_student():
    from core.methods.base import DataSizes
    from core.models import feature_dim

    sizes = DataSizes(labeled=100, test=1000, unlabeled=5000)
    cfg = TrainConfig(method="spreadtune", arch=TINY, weights="x.pth", finetune="all", n_unlabeled=2000, per_class=30,
                      knn=9, epochs=3, batch_size=70, mu=7, eval_every=0, flip_test=False)  # fmt: skip
    timing = CountingTiming()
    teacher = 2000 * 0.01 * 2  # the pool's features, flip-averaged (the labeled images' are cached)
    student = 3 * -(-300 // 70) * 0.5  # 3 epochs over 30 per class, steps of 70 + 10 labeled images
    expected = teacher + 7.0 + student + 1000 * 0.01  # + the graph + the test pass
    assert get_method("spreadtune").estimate(cfg, sizes, timing) == pytest.approx(expected)
    assert timing.graphs == [(2100, feature_dim(TINY), 9)] and timing.steps == [80]
