"""A new method is one object and one `register` call: validate, the CLI and the Train page see it
with no edit to core. The toy method lives in this file only."""

import json

import pytest
import torch

from core.config import ConfigError, TrainConfig
from core.methods.base import Method, Outcome, RunContext, finish
from core.methods.registry import default_preset, get_method, list_methods, preset, register, unregister, validate
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


class UnitTiming:
    """A Timing in which one kind of work costs 1 and every other costs nothing: an estimate made with it
    is the count of that work (images through the network, head steps, network steps, graphs) that the
    estimate expects."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def train_step(self, arch, resolution, batch):
        return float(self.kind == "train_steps")

    def per_image(self, arch, resolution):
        return float(self.kind == "images")

    def features_cached(self, cfg, what):
        return False  # the runs below start with an empty cache

    def head_step(self, dim):
        return float(self.kind == "head_steps")

    def graph(self, n, dim, k):
        return float(self.kind == "graphs")

    def spread(self, n, k, classes):
        return float(self.kind == "spreads")

    def fold(self, arch):
        return float(self.kind == "folds")

    def centroid_pass(self, dim):
        return float(self.kind == "centroid_rows")

    def load_seconds(self, nbytes):
        return 0.0  # nothing is cached


def count_work(monkeypatch, cfg, splits, cache_dir) -> dict[str, float]:
    """The work a real run does, counted where it happens: images through the backbone (feature extraction
    and test passes), steps of a linear head, steps of a whole network, kNN graphs built, and spreadings over a
    graph built already (labelspread's later rounds, seeded by a head's predictions)."""
    import core.methods.base as base
    import core.methods.frozen as frozen
    import core.methods.labelspread as labelspread
    import core.methods.scratch as scratch
    import core.methods.spreadtune as spreadtune
    from core.runs.train import fit

    counts = {"images": 0, "head_steps": 0, "train_steps": 0, "graphs": 0, "spreads": 0, "folds": 0, "centroid_rows": 0}
    real_extract, real_predict, real_graph = frozen.extract, base.predict, labelspread.knn_graph
    real_spread = labelspread.label_spread

    def extract(model, images, **kw):
        counts["images"] += len(images) * (2 if kw.get("flip") else 1)
        counts["folds"] += len(images) > 0  # each extraction folds the network once (core.engine.fusion)
        return real_extract(model, images, **kw)

    def predict(forward, inputs, *args, **kw):
        if inputs.dtype == torch.uint8:  # images through the network; a trained head's predictions cost nothing
            counts["images"] += len(inputs) * (2 if getattr(forward, "flip_test", False) else 1)  # and its mirror
        elif float(getattr(forward, "power", 1.0)) != 1.0:  # a centroid head's power transform
            counts["centroid_rows"] += len(inputs)
        return real_predict(forward, inputs, *args, **kw)

    def graph(features, k, **kw):
        counts["graphs"] += 1
        return real_graph(features, k, **kw)

    def spread(graph, labels, n_classes, **kw):
        counts["spreads"] += kw.get("prior") is not None  # the first spreading is the graph's own
        return real_spread(graph, labels, n_classes, **kw)

    def counted_loop(real, kind):
        def loop(params, n_items, cfg, step_loss, **kw):
            def step(idx):
                counts[kind] += 1
                return step_loss(idx)

            return real(params, n_items, cfg, step, **kw)

        return loop

    monkeypatch.setattr(frozen, "extract", extract)
    monkeypatch.setattr(spreadtune, "extract", extract)  # a later round's teacher: the student's features
    monkeypatch.setattr(base, "predict", predict)
    monkeypatch.setattr(labelspread, "knn_graph", graph)
    monkeypatch.setattr(labelspread, "label_spread", spread)
    monkeypatch.setattr(frozen, "train_loop", counted_loop(frozen.train_loop, "head_steps"))
    monkeypatch.setattr(spreadtune, "train_loop", counted_loop(spreadtune.train_loop, "train_steps"))
    monkeypatch.setattr(scratch, "train_loop", counted_loop(scratch.train_loop, "train_steps"))
    record = fit(cfg, splits, cache_dir=cache_dir)
    assert record.status == "finished", record.message
    return counts


@pytest.mark.parametrize(
    "method, overrides",
    [
        ("scratch", dict(weights="", epochs=6, batch_size=8, eval_every=2, eval_subset=20, flip_test=True)),
        ("transfer", dict(classifier="trained", epochs=5, batch_size=7, augment="hflip", flip_features=True)),
        ("transfer", dict(classifier="centroids", flip_features=True)),
        ("transfer", dict(classifier="lda", augment="hflip")),
        ("transfer", dict(finetune="last", epochs=3, batch_size=8, eval_every=1, eval_subset=10, flip_test=False)),
        ("selftrain", dict(rounds=3, per_class=4, n_unlabeled=40, epochs=3, batch_size=8)),
        ("labelspread", dict(rounds=1, per_class=5, knn=3, epochs=4, batch_size=9)),
        ("labelspread", dict(rounds=3, per_class=5, knn=3, epochs=4, batch_size=9)),
        ("spreadtune", dict(per_class=6, knn=3, n_unlabeled=50, epochs=2, batch_size=7, mu=2, eval_every=0,
                            ema=0.0, flip_test=False)),
        ("spreadtune", dict(per_class=6, knn=3, n_unlabeled=50, epochs=2, batch_size=7, mu=2, eval_every=0,
                            ema=0.5, flip_test=False, spread_rounds=2, flip_features=True)),
    ],
)  # fmt: skip
def test_a_semi_estimate_counts_the_work_its_run_does(method, overrides, splits, checkpoint, tmp_path, monkeypatch):
    """Each estimate against a real run of its method on the synthetic data: the images it puts through the
    network, the head and network steps it takes, the graphs it builds and the feature rows a centroid head
    predicts, counted as the run does them
    (so an estimate that forgets a phase, or assumes CIFAR's 10 classes, fails here)."""
    from core.methods.base import DataSizes

    cfg = preset(method, default_preset(method), **dict(arch=TINY, weights=checkpoint, resolution=32, normalize=False,
                 flip_features=False, device="cpu", n_labeled=30) | overrides)  # fmt: skip
    sizes = DataSizes(len(splits.labeled_y), len(splits.test_y), len(splits.unlabeled_x), len(splits.classes))
    done = count_work(monkeypatch, cfg, splits, tmp_path / "cache")
    expected = {kind: get_method(method).estimate(cfg, sizes, UnitTiming(kind)) for kind in done}
    assert expected == pytest.approx(done), (expected, done)


def test_the_quick_presets_are_the_recommended_recipes_with_less_to_compute():
    from core.methods.registry import preset

    def cost(c):  # image passes of the features' extraction, and training epochs
        return ((c.n_unlabeled if c.method == "labelspread" else 0) + 10_000) * c.resolution**2 * (
            2 if c.flip_features else 1
        ), c.epochs

    for method in ("scratch", "transfer", "labelspread"):
        quick, recommended = preset(method, "quick"), preset(method, "recommended")
        assert quick.arch == recommended.arch and quick.preset == "quick"
        assert cost(quick) < cost(recommended) or quick.epochs < recommended.epochs, method
    assert preset("scratch", "quick").epochs < preset("scratch", "recommended").epochs
