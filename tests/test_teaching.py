"""The teaching views' core: kept weights and Try a model, refused uploads, the feature map's cache,
label spreading replayed, and runs exported and imported with their weights."""

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from core.access import SINGLE_USER as ME
from core.config import TrainConfig
from core.methods.knn_graph import knn_graph, label_spread
from core.methods.registry import preset
from core.runs.inference import MAX_UPLOAD_BYTES, ImageError, predictor, read_upload, top_k
from core.runs.store import RunStore, StoreError
from core.runs.train import execute
from core.views import featuremap
from tests.conftest import TINY

SCRATCH = TrainConfig(arch=TINY, epochs=3, batch_size=10, lr=1e-2, device="cpu", n_labeled=30, eval_every=0)


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probs.argmax(1) == labels).float().mean())


def test_a_network_is_kept_when_asked_and_predicts_what_the_run_measured(splits, tmp_path):
    store = RunStore(tmp_path / "runs")
    plain = execute(SCRATCH, splits, store)
    assert not store.has_weights(plain.run_id)
    with pytest.raises(StoreError, match="kept no weights"):
        predictor(store, plain, 3)
    kept = execute(SCRATCH.with_(keep_weights=True), splits, store)
    assert kept.config_hash == plain.config_hash  # a storage option, not another experiment
    assert store.load_weights(kept.run_id).kind == "network" == store.weights_kind(kept.run_id)
    assert store.weights_kind(plain.run_id) is None
    probs = predictor(store, kept, 3)(splits.test_x)
    assert probs.shape == (30, 3) and torch.allclose(probs.sum(1), torch.ones(30))
    assert accuracy(probs, splits.test_y) == pytest.approx(kept.metrics.test_acc)


def test_a_head_on_frozen_features_is_always_kept_in_kilobytes(splits, checkpoint, tmp_path):
    store = RunStore(tmp_path / "runs")
    cfg = preset("labelspread", "recommended", arch=TINY, weights=checkpoint, resolution=32, normalize=False,
                 flip_features=True, epochs=10, per_class=5, knn=3, device="cpu")  # fmt: skip
    record = execute(cfg, splits, store, cache_dir=tmp_path / "cache")
    kept = store.load_weights(record.run_id)
    assert kept.kind == "head" == store.weights_kind(record.run_id)
    assert set(kept.state) == {"head.weight", "head.bias", "mean", "std", "power"}
    assert store.weights_bytes(record.run_id) < 10_000
    probs = predictor(store, record, 3)(splits.test_x)
    assert accuracy(probs, splits.test_y) == pytest.approx(record.metrics.test_acc)
    ranked = [splits.classes[i] for i in probs[0].argsort(descending=True)]
    assert [c for c, _ in top_k(probs[0], splits.classes)] == ranked


def png(size=(40, 24), mode="RGB", fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color=(200, 10, 10) if mode == "RGB" else 1).save(buf, fmt)
    return buf.getvalue()


def test_uploads_are_read_in_memory_or_refused_with_a_reason():
    image = read_upload(png())
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and int(image[0].float().mean()) == 200
    assert read_upload(png(fmt="JPEG")).shape == (3, 32, 32)
    refusals = {
        b"%PDF-1.4 not an image": "not an image",
        b"": "empty",
        png()[:60]: "corrupt or truncated",
        png(fmt="GIF"): "upload a PNG or JPEG",
        png((8000, 8000), mode="1"): "decompression bomb",  # 64 megapixels in a few kilobytes
        png() + b"\0" * MAX_UPLOAD_BYTES: "at most 5 MB",
    }
    for data, reason in refusals.items():
        with pytest.raises(ImageError, match=reason):
            read_upload(data)


def test_the_projection_is_cached_by_content(tmp_path, monkeypatch):
    from sklearn import manifold

    calls = []
    real = manifold.TSNE.fit_transform
    monkeypatch.setattr(manifold.TSNE, "fit_transform", lambda self, x: calls.append(len(x)) or real(self, x))
    feats = torch.randn(60, 16)
    first = featuremap.project(feats, tmp_path)
    again = featuremap.project(feats.clone(), tmp_path)
    assert calls == [60] and first.shape == (60, 2) and np.array_equal(first, again)
    featuremap.project(feats + 1e-3, tmp_path)  # other content, another map
    assert calls == [60, 60] and len(list((tmp_path / "maps").glob("*.pt"))) == 2


def test_map_features_are_cached_per_backbone_and_a_random_network_is_the_same_each_time(splits, tmp_path):
    from tests.plugins import tiny_cnn

    torch.manual_seed(1)  # "pretrained": other weights than the random network's seed 0
    torch.save(tiny_cnn().state_dict(), tmp_path / "pre.pth")
    pre = featuremap.Backbone(TINY, str(tmp_path / "pre.pth"), 32)
    rnd = featuremap.random_backbone(pre)
    a = featuremap.map_features(rnd, splits, "test", 20, tmp_path)
    b = featuremap.map_features(rnd, splits, "test", 20, tmp_path / "other")
    assert a.shape == (30 + 20, 16) and torch.equal(a, b)
    c = featuremap.map_features(pre, splits, "test", 20, tmp_path)
    assert not torch.equal(a, c)
    x, y, idx = featuremap.map_images(splits, "unlabeled", 25)
    assert len(x) == 55 and torch.equal(y[30:], splits.unlabeled_hidden_y[idx])


def test_the_spreading_replay_ends_with_label_spreads_labels_and_never_reads_the_hidden_labels(splits, checkpoint):
    feats = featuremap.map_features(featuremap.Backbone(TINY, checkpoint, 32), splits, "unlabeled", 60, None)
    hidden = splits.unlabeled_hidden_y
    steps = featuremap.spread_replay(feats, splits.labeled_y, 3, hidden, k=3)
    assert [s.step for s in steps] == [0, 1, 2, 5, 10, 20, 50]
    assert steps[0].reached_fraction == 0 and steps[0].accuracy is None and steps[-1].reached_fraction == 1
    expected = label_spread(knn_graph(feats, 3), splits.labeled_y, 3).argmax(1)
    assert torch.equal(steps[-1].labels, expected)
    scrambled = featuremap.spread_replay(feats, splits.labeled_y, 3, hidden.roll(7), k=3)
    assert all(torch.equal(s.labels, t.labels) for s, t in zip(steps, scrambled, strict=True))
    assert [s.accuracy for s in steps] != [s.accuracy for s in scrambled]


def test_export_and_import_carry_the_weights_and_refuse_strangers(splits, tmp_path):
    a = RunStore(tmp_path / "a")
    kept = execute(SCRATCH.with_(keep_weights=True), splits, a)
    bare = execute(SCRATCH.with_(seed=1), splits, a)
    archive = a.export_archive([kept.run_id, bare.run_id], by=ME)
    b = RunStore(tmp_path / "b")
    assert sorted(b.import_file(archive, by=ME)) == sorted([kept.run_id, bare.run_id])
    assert b.has_weights(kept.run_id) and not b.has_weights(bare.run_id)
    ours, theirs = (s.load_weights(kept.run_id).state for s in (a, b))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert b.import_file(a.export_json([bare.run_id], by=ME).encode(), by=ME) == [
        bare.run_id
    ]  # plain JSON still imports

    def zipped(**members) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name, data in members.items():
                z.writestr(name.replace("__", "/"), data)
        return buf.getvalue()

    runs = json.dumps({"runs": [kept.to_dict()]})
    c = RunStore(tmp_path / "c")
    for bad, reason in (
        (zipped(other=b"x"), "no runs.json"),
        (zipped(**{"runs.json": runs, "weights__zz.pt": b"x"}), "no run's weights"),
        (zipped(**{"runs.json": runs, f"weights__{kept.run_id}.pt": b"pickle"}), "cannot be read as weights"),
        (b"PK\x03\x04 broken", "not a readable zip"),
    ):
        with pytest.raises(StoreError, match=reason):
            c.import_file(bad, by=ME)
    assert c.runs() == []  # nothing half-imported
    a.delete(kept.run_id, by=ME)
    assert not a.has_weights(kept.run_id)


def test_the_stem_view_orders_the_patch_directions_and_draws_filters_and_channels(splits):
    from core.views.stem import stem_view

    view = stem_view(splits.labeled_x, 3)
    assert len(view.variances) == 12 and view.variances == sorted(view.variances, reverse=True)
    assert view.filters.shape == (12, 2, 2, 3) and view.filters.dtype == np.uint8
    h, w = splits.labeled_x.shape[-2:]
    assert view.channels.shape == (12, h - 1, w - 1) and view.channels.dtype == np.uint8
    # Each picture is scaled to its own range around grey (128), so each reaches an extreme.
    for pictures in (view.filters.reshape(12, -1), view.channels.reshape(12, -1)):
        extremes = np.abs(pictures.astype(int) - 128).max(1)
        assert (extremes == 127).all(), extremes
    assert not np.array_equal(view.channels, stem_view(splits.labeled_x, 4).channels)  # another image
