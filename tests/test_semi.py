from dataclasses import replace

import pytest
import torch

from core.config import ConfigError, TrainConfig
from core.methods.knn_graph import knn_graph, label_spread, spread_steps, whitened
from core.methods.pseudo_labels import mark_gallery, select_pseudo_labels
from core.methods.registry import preset, validate
from core.runs.train import fit
from tests.conftest import TINY


def selftrain_cfg(checkpoint, method="selftrain", name="notebook", **kw):
    base = dict(arch=TINY, weights=checkpoint, resolution=32, epochs=20, lr=0.05, rounds=2, per_class=5, threshold=0.0,
                n_unlabeled=0, device="cpu")  # fmt: skip
    return preset(method, name, **base | kw)


def fixmatch_cfg(checkpoint=None, **kw):
    base = dict(arch=TINY, weights=checkpoint or "", resolution=32, normalize=False, epochs=2, batch_size=6, mu=2,
                lr=0.01, eval_every=1, eval_subset=30, device="cpu", precision="fp32")  # fmt: skip
    return preset("fixmatch", "notebook", **base | kw)


def spreadtune_cfg(checkpoint, **kw):
    base = dict(arch=TINY, weights=checkpoint, resolution=32, normalize=False, n_unlabeled=0, per_class=4, knn=5,
                epochs=3, batch_size=6, mu=3, lr=0.001, ema=0.5, warmup_epochs=0, eval_every=1, eval_subset=30,
                device="cpu", precision="fp32")  # fmt: skip
    return preset("spreadtune", "gpu", **base | kw)


def test_select_pseudo_labels_is_confident_and_balanced():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    assert select_pseudo_labels(probs, 0.0, 0).tolist() == [0, 1, 2, 3, 4]
    assert select_pseudo_labels(probs, 0.65, 0).tolist() == [0, 1, 3]
    assert select_pseudo_labels(probs, 0.0, 1).tolist() == [0, 3]  # the most confident of each class


def test_self_training_runs_and_saves_diagnostics(splits, checkpoint, tmp_path):
    rows = []
    record = fit(selftrain_cfg(checkpoint), splits, on_row=rows.append, cache_dir=tmp_path)
    assert record.status == "finished" and record.unit == "round" and record.total_units == 3
    rounds = record.diagnostics["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2] and len(rows) == 3
    assert [r["unit"] for r in rows] == ["round"] * 3 and [r["index"] for r in rows] == [1, 2, 3]
    assert [r["accepted"] for r in rounds] == [0, 15, 30]  # 5 per class, then 10 per class
    assert all(0 <= r["pseudo_acc"] <= 1 for r in rounds[1:])
    assert rounds[1]["per_class"] == [5, 5, 5]
    assert record.diagnostics["final_count"] == 30


def test_hidden_labels_do_not_change_training(splits, checkpoint, tmp_path):
    cfg = selftrain_cfg(checkpoint)
    scrambled = replace(splits, unlabeled_hidden_y=splits.unlabeled_hidden_y.flip(0).roll(7))
    a = fit(cfg, splits, cache_dir=tmp_path)
    b = fit(cfg, scrambled, cache_dir=tmp_path)
    assert a.metrics.test_acc == b.metrics.test_acc and a.metrics.confusion == b.metrics.confusion
    ra, rb = a.diagnostics["rounds"], b.diagnostics["rounds"]
    assert [r["accepted"] for r in ra] == [r["accepted"] for r in rb]
    assert ra[2]["per_class"] == rb[2]["per_class"]
    assert ra[2]["pseudo_acc"] != rb[2]["pseudo_acc"]  # only diagnostics move
    # The pseudo-label gallery: the same images and confidences; only the right/wrong marks move.
    ga, gb = a.diagnostics["gallery"], b.diagnostics["gallery"]
    assert ga == gb and sum(c["count"] for c in ga["per_class"]) == ra[-1]["accepted"]
    ma, mb = mark_gallery(ga, splits.unlabeled_hidden_y), mark_gallery(gb, scrambled.unlabeled_hidden_y)
    strip = lambda m: [{k: v for k, v in c.items() if k not in ("right", "wrong", "most", "least")} for c in m]  # noqa: E731
    assert strip(ma) == strip(mb)
    marks = lambda m: [e["right"] for c in m for end in ("most", "least") for e in c[end]]  # noqa: E731
    indices = lambda m: [e["index"] for c in m for end in ("most", "least") for e in c[end]]  # noqa: E731
    assert indices(ma) == indices(mb) and marks(ma) != marks(mb)
    shown = sum(c["right"] + c["wrong"] for c in ma)
    assert shown == len(marks(ma)) > 0

    c, d = fit(fixmatch_cfg(), splits), fit(fixmatch_cfg(), scrambled)
    assert c.metrics.test_acc == d.metrics.test_acc
    assert [r["train_loss"] for r in c.history] == [r["train_loss"] for r in d.history]
    assert [r["pseudo_acc"] for r in c.history] != [r["pseudo_acc"] for r in d.history]


def test_fixmatch_runs_with_diagnostics_and_honours_stop(splits):
    cfg = fixmatch_cfg(epochs=3, threshold=0.5, lr=0.03)
    record = fit(cfg, splits)
    assert record.status == "finished" and len(record.history) == 3
    assert all("mask_rate" in row for row in record.history)
    assert record.history[-1]["test_acc"] is not None
    assert len(record.diagnostics["rounds"]) == 3
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 6

    stopped = fit(cfg.with_(epochs=50), splits, should_stop=stop)
    assert stopped.status == "stopped" and len(stopped.history) < 50


def test_spreadtune_teaches_the_network_the_spread_labels(splits, checkpoint, tmp_path):
    rows = []
    record = fit(spreadtune_cfg(checkpoint), splits, on_row=rows.append, cache_dir=tmp_path)
    assert record.status == "finished" and len(rows) == 3 and rows[-1]["test_acc"] is not None
    d = record.diagnostics
    assert d["final_count"] == 12  # 4 per class of the 60 unlabeled images
    assert sum(c["count"] for c in d["gallery"]["per_class"]) == 12
    assert 0 <= d["final_acc"] <= 1 and record.timings["teacher_s"] > 0 and 0 <= d["start_test_acc"] <= 1
    assert record.metrics.test_acc > 0.6  # the colour classes: learnt, whatever the seed
    # the teacher's features: cached once (labeled and unlabeled images), read back by the next run
    cached = sorted((tmp_path / "features").glob("*.pt"))
    stamps = [f.stat().st_mtime_ns for f in cached]
    again = fit(spreadtune_cfg(checkpoint, seed=1), splits, cache_dir=tmp_path)
    assert again.status == "finished" and len(cached) == 2
    assert [f.stat().st_mtime_ns for f in cached] == stamps  # read, not rewritten
    # nothing new: the plain labeled images' features are one file for every seed
    assert sorted((tmp_path / "features").glob("*.pt")) == cached
    # hidden labels: diagnostics only
    scrambled = replace(splits, unlabeled_hidden_y=splits.unlabeled_hidden_y.flip(0).roll(7))
    other = fit(spreadtune_cfg(checkpoint), scrambled, cache_dir=tmp_path)
    assert [r["train_loss"] for r in other.history] == [r["train_loss"] for r in record.history]
    assert other.diagnostics["final_acc"] != d["final_acc"]


def test_spreadtune_spreads_again_over_the_students_features(splits, checkpoint, tmp_path):
    rows = []
    cfg = spreadtune_cfg(checkpoint, spread_rounds=2, epochs=2)
    record = fit(cfg, splits, on_row=rows.append, cache_dir=tmp_path)
    assert record.status == "finished" and record.total_units == 4
    # one learning curve: epochs 1-4, the last two from the second round
    assert [r["index"] for r in rows] == [1, 2, 3, 4] and [r["round"] for r in rows] == [1, 1, 2, 2]
    assert [r["index"] for r in record.history] == [1, 2, 3, 4]
    seconds = [r["seconds"] for r in record.history]
    assert seconds == sorted(seconds) and seconds[2] > seconds[1]  # the time so far, for the ETA
    rounds = record.diagnostics["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and all(r["accepted"] == 12 for r in rounds)
    # the student's features are never cached: they are the student's, not the pretrained network's
    assert len(list((tmp_path / "features").glob("*.pt"))) == 2


def test_spreadtune_needs_weights_and_a_network_that_learns(checkpoint):
    with pytest.raises(ConfigError, match="weights"):
        validate(TrainConfig(method="spreadtune", arch=TINY, weights="", finetune="all"))
    with pytest.raises(ConfigError, match="finetune"):
        validate(TrainConfig(method="spreadtune", arch=TINY, weights=checkpoint, finetune="head"))


@pytest.mark.parametrize("method", ["selftrain", "labelspread", "fixmatch", "spreadtune"])
def test_divergence_is_detected_in_every_semi_method(splits, checkpoint, tmp_path, monkeypatch, method):
    import core.runs.train

    real = core.runs.train.create_model

    def poisoned(*args, **kwargs):
        model = real(*args, **kwargs)
        torch.nn.init.constant_(model.head.weight, float("inf"))
        return model

    monkeypatch.setattr(core.runs.train, "create_model", poisoned)
    if method == "fixmatch":
        cfg = fixmatch_cfg()
    elif method == "spreadtune":
        cfg = spreadtune_cfg(checkpoint)
    else:
        cfg = selftrain_cfg(checkpoint, method, "notebook" if method == "selftrain" else "recommended")
    record = fit(cfg, splits, cache_dir=tmp_path)
    assert record.status == "diverged", (method, record.message)
    assert "NaN" in record.message


def test_semi_needs_unlabeled_images_and_sensible_settings(splits, checkpoint):
    empty = replace(splits, unlabeled_x=splits.unlabeled_x[:0], unlabeled_hidden_y=None)
    with pytest.raises(ValueError, match="unlabeled"):
        fit(selftrain_cfg(checkpoint), empty)
    with pytest.raises(ConfigError, match="finetune"):
        validate(TrainConfig(method="selftrain", arch=TINY, weights=checkpoint, finetune="all"))


def test_label_spreading_on_a_knn_graph(splits, checkpoint, tmp_path):
    # two tight clusters: spreading from one seed each labels every point of its cluster
    torch.manual_seed(0)
    pts = torch.cat([torch.randn(20, 8) * 0.1 + 3, torch.randn(20, 8) * 0.1 - 3])
    order = torch.tensor([0, 20] + [i for i in range(40) if i not in (0, 20)])
    graph = knn_graph(pts[order], k=5, dims=4)
    probs = label_spread(graph, torch.tensor([0, 1]), 2)
    truth = (order[2:] >= 20).long()
    assert torch.equal(probs.argmax(1), truth) and torch.allclose(probs.sum(1), torch.ones(38))
    steps = list(spread_steps(graph, torch.tensor([0, 1]), 2))
    assert len(steps) == 21 and steps[0][2:].abs().sum() == 0  # step 0: only the seeds carry labels

    cfg = selftrain_cfg(checkpoint, "labelspread", "recommended", rounds=1, knn=5, flip_features=True)
    record = fit(cfg, splits, cache_dir=tmp_path)
    assert record.status == "finished" and record.diagnostics["algorithm"] == "labelspread"
    assert record.diagnostics["rounds"][1]["accepted"] == 15  # per_class=5, 3 classes
    assert record.diagnostics["final_acc"] > 0.9  # the synthetic classes are colour clusters


def test_whitening_lets_a_weak_direction_decide_the_neighbours():
    # two clusters told apart by a direction of small variance, buried under two of large variance:
    # plain cosine similarity pairs points by the loud direction, whitened similarity by the clusters
    torch.manual_seed(0)
    side = torch.cat([torch.full((30,), 1.0), torch.full((30,), -1.0)])
    pts = torch.stack([side + 0.05 * torch.randn(60), 50 * torch.randn(60), 50 * torch.randn(60)], 1)

    def same_cluster_share(z):
        nearest = (z @ z.T).fill_diagonal_(-2).argmax(1)
        return float((side[nearest] == side).float().mean())

    assert same_cluster_share(torch.nn.functional.normalize(pts - pts.mean(0), dim=1)) < 0.8
    assert same_cluster_share(whitened(pts, dims=3)) == 1.0
    # and it does not depend on the features' scale: any invertible linear map gives the same similarities
    mixed = pts @ torch.tensor([[2.0, 0.5, 0.0], [0.0, 0.1, 1.0], [1.0, 0.0, 3.0]])
    z, z_mixed = whitened(pts.double(), 3, eps=0), whitened(mixed.double(), 3, eps=0)
    assert torch.allclose(z @ z.T, z_mixed @ z_mixed.T, atol=1e-6)


def test_graph_building_can_be_stopped():
    with pytest.raises(InterruptedError):
        knn_graph(torch.randn(50, 8), k=3, dims=4, chunk=10, should_stop=lambda: True)


def test_flip_averaged_features_reach_self_training(splits, checkpoint, tmp_path):
    for flip in (False, True):
        fit(selftrain_cfg(checkpoint, rounds=1, flip_features=flip), splits, cache_dir=tmp_path / str(flip))
    plain, flipped = ([torch.load(p) for p in sorted((tmp_path / str(f) / "features").glob("*.pt"), key=str)]
                      for f in (False, True))  # fmt: skip
    assert len(plain) == len(flipped) == 3  # labeled, test, unlabeled
    unlabeled = [[t for t in group if len(t) == len(splits.unlabeled_x)][0] for group in (plain, flipped)]
    assert not torch.equal(*unlabeled)


def test_stop_during_feature_extraction_ends_the_run_at_once(splits, checkpoint, tmp_path):
    """Stop is asked before every batch of the feature extraction, not only between training steps."""
    notes = []

    def progress(fraction, text):
        notes.append(text)

    record = fit(selftrain_cfg(checkpoint, "labelspread", "recommended"), splits, cache_dir=tmp_path,
                 progress=progress, should_stop=lambda: len(notes) > 0)  # fmt: skip
    assert record.status == "stopped" and "feature extraction" in record.message
    assert len(notes) == 1 and record.history == [] and record.metrics.test_acc is None


def test_a_small_graph_whitens_fewer_directions_than_it_has_images():
    # 48 images in 64 dimensions: whitening all 47 directions of the sample puts every image at the same
    # distance from every other; the graph keeps a direction per 8 images and finds the four clusters
    torch.manual_seed(0)
    centres = torch.randn(4, 64) * 3
    pts = torch.cat([centres[c] + torch.randn(12, 64) for c in range(4)])
    truth = torch.arange(4).repeat_interleave(12)
    order = torch.tensor([0, 12, 24, 36] + [i for i in range(48) if i % 12])  # one labeled image per cluster
    probs = label_spread(knn_graph(pts[order], k=5), torch.arange(4), 4)
    assert torch.equal(probs.argmax(1), truth[order[4:]])
    flat = whitened(pts, dims=47)
    assert (flat @ flat.T).fill_diagonal_(0).abs().max() < 0.1  # all but orthogonal: no neighbour is nearer
