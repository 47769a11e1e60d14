import math

import pytest
import torch

from core.config import TrainConfig
from core.engine.loop import supervised_step, train_loop
from core.engine.optim import lr_factor
from core.methods.registry import preset
from core.models import create_model
from core.runs.train import fit
from tests.conftest import TINY

FAST = dict(arch=TINY, epochs=4, batch_size=10, eval_every=2, eval_subset=30, device="cpu")


def test_loss_falls_and_test_accuracy_beats_chance(splits):
    cfg = preset("scratch", "recommended", **FAST | {"epochs": 15, "warmup_epochs": 1, "augment": "hflip"})
    rows = []
    record = fit(cfg, splits, on_row=rows.append)
    assert record.status == "finished" and len(rows) == 15 and record.history == rows
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert record.metrics.test_acc > 0.5  # chance is 1/3
    assert rows[1]["test_acc"] is not None and rows[0]["test_acc"] is None
    assert [r["index"] for r in rows[:3]] == [1, 2, 3] and rows[0]["unit"] == "epoch" == record.unit
    m = record.metrics
    assert len(m.per_class_acc) == 3 and sum(map(sum, m.confusion)) == 30 and m.test_images == 30
    assert record.env["torch"] == torch.__version__ and record.dataset["test"] == 30


def test_resnet18_cifar_trains_end_to_end(splits):
    record = fit(TrainConfig(**FAST | {"arch": "resnet18_cifar", "epochs": 1, "lr": 1e-3}), splits)
    assert record.status == "finished" and record.metrics.test_acc is not None


def test_same_seed_same_numbers_other_seed_other_numbers(splits):
    cfg = TrainConfig(**FAST | {"epochs": 2, "lr": 1e-3, "augment": "flip_crop_mixup", "precision": "fp32"})
    a, b = fit(cfg, splits), fit(cfg, splits)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert a.metrics.test_acc == b.metrics.test_acc
    c = fit(cfg.with_(seed=1), splits)
    assert [r["train_loss"] for r in c.history] != [r["train_loss"] for r in a.history]


def test_stop_request_is_honoured_between_steps(splits):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 4  # 3 steps an epoch: the second step of epoch 2

    record = fit(TrainConfig(**FAST | {"epochs": 50, "eval_every": 1}), splits, should_stop=should_stop)
    assert record.status == "stopped" and len(record.history) == 1
    assert "epoch 2" in record.message and calls["n"] == 5
    # Stop takes effect at once: no full test pass, the last check stands in, marked partial
    assert record.metrics.partial and record.metrics.test_acc == record.history[-1]["test_acc"]
    assert record.metrics.test_images == 30 and "full test pass was skipped" in record.message
    assert record.metrics.train_acc is not None


def test_nan_loss_is_detected_with_advice():
    w = torch.nn.Parameter(torch.tensor(float("nan")))
    x, y = torch.zeros(8, 3), torch.zeros(8, dtype=torch.long)

    def step(idx):
        logits = x[idx] * w
        return torch.nn.functional.cross_entropy(logits, y[idx]), torch.zeros(())

    result = train_loop([w], 8, TrainConfig(epochs=3, batch_size=4), step, device=torch.device("cpu"))
    assert result.status == "diverged" and "lower the learning rate" in result.message and "0.01" in result.message


def test_divergence_ends_the_run_through_fit(splits, monkeypatch):
    import core.models
    import core.runs.train

    def poisoned(*args, **kwargs):  # a model whose weights already blew up
        model = core.models.create_model(*args, **kwargs)
        torch.nn.init.constant_(model.head.weight, float("inf"))
        return model

    monkeypatch.setattr(core.runs.train, "create_model", poisoned)
    record = fit(TrainConfig(**FAST), splits)
    assert record.status == "diverged" and "lower the learning rate" in record.message
    assert record.history == [] and "epoch 1" in record.message


def test_schedules_are_pure_functions_of_the_step():
    step = TrainConfig(epochs=100, schedule="step")
    assert lr_factor(step, 0, 10) == 1 and math.isclose(lr_factor(step, 300, 10), 0.1)
    assert math.isclose(lr_factor(step, 999, 10), 0.001)
    cos = TrainConfig(epochs=10, schedule="cosine", warmup_epochs=1)
    assert lr_factor(cos, 0, 10) == pytest.approx(0.1) and lr_factor(cos, 9, 10) == 1.0
    assert lr_factor(cos, 99, 10) < 0.01
    one = TrainConfig(epochs=10, schedule="onecycle")
    assert lr_factor(one, 29, 10) == 1.0 and lr_factor(one, 0, 10) < 0.1


def test_linear_probe_on_frozen_features(splits, checkpoint, tmp_path):
    cfg = preset("transfer", "recommended", arch=TINY, weights=checkpoint, resolution=32, lr=0.05, device="cpu")
    first = fit(cfg, splits, cache_dir=tmp_path / "cache")
    assert first.status == "finished" and first.metrics.test_acc > 0.5
    cached = sorted((tmp_path / "cache" / "features").glob("*.pt"))
    assert len(cached) == 2  # labeled views + test
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = fit(cfg, splits, cache_dir=tmp_path / "cache")  # from the feature cache: same numbers
    assert again.metrics.test_acc == first.metrics.test_acc
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # read, not rewritten
    other_seed = fit(cfg.with_(seed=1), splits, cache_dir=tmp_path / "cache")  # plain images: the same features
    assert other_seed.status == "finished" and sorted((tmp_path / "cache" / "features").glob("*.pt")) == cached
    augmented = cfg.with_(augment="flip_crop", classifier="trained", epochs=2)
    for seed in (0, 1):  # augmented views differ by seed: a file of their own each
        assert fit(augmented.with_(seed=seed), splits, cache_dir=tmp_path / "cache").status == "finished"
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 4


def test_a_head_of_class_centroids_picks_the_nearest_class_mean_of_the_signed_square_roots_by_cosine():
    from core.methods.centroids import centroid_head

    torch.manual_seed(0)
    features, labels = torch.randn(40, 6) * 4 + 1, torch.arange(40) % 4
    head = centroid_head(torch.nn.Linear(6, 5), features, labels)  # 5 classes, one of them without images
    root = features.sign() * features.abs().sqrt()
    centred = root - root.mean(0)
    means = torch.stack([centred[labels == c].mean(0) for c in range(4)])
    queries = torch.randn(300, 6) * 4 + 1
    roots = queries.sign() * queries.abs().sqrt()
    normalize = torch.nn.functional.normalize
    cosine = normalize(roots - root.mean(0), dim=1) @ normalize(means, dim=1).T
    raw_means = torch.stack([(features - features.mean(0))[labels == c].mean(0) for c in range(4)])
    on_raw = normalize(queries - features.mean(0), dim=1) @ normalize(raw_means, dim=1).T
    with torch.no_grad():
        logits = head(queries)
    assert torch.equal(logits.argmax(1), cosine.argmax(1))
    assert not torch.equal(logits.argmax(1), on_raw.argmax(1))  # the square roots changed some answers
    assert torch.all(logits[:, 4] == 0)  # the class without images: a zero row, no NaN


def test_shrunk_inverse_solves_the_shrunk_covariance_through_either_matrix():
    from core.methods.centroids import shrunk_inverse

    torch.manual_seed(0)
    for n, d in ((12, 30), (40, 8)):  # fewer images than features (Woodbury) and more
        residuals, targets = torch.randn(n, d), torch.randn(3, d)
        r = residuals.double()
        sphere = float(r.square().mean())
        shrunk = 0.2 * r.T @ r / n + 0.8 * sphere * torch.eye(d, dtype=torch.float64)
        expected = torch.linalg.solve(shrunk, targets.double().T).T.float()
        assert torch.allclose(shrunk_inverse(residuals, targets, 0.2), expected, atol=1e-4, rtol=1e-4)
    # each class one image: no residual to measure a covariance with, the targets keep their directions (no NaN)
    solved = shrunk_inverse(torch.zeros(5, 4), torch.eye(4)[:2] * 3, 0.05)
    assert torch.allclose(torch.nn.functional.normalize(solved, dim=1), torch.eye(4)[:2])


def test_an_lda_head_discounts_a_direction_in_which_every_class_varies():
    from core.methods.centroids import centroid_head

    # Two classes 1.5 apart along feature 0; feature 1 is shared noise, 8 times as wide, whose class means over 20
    # images differ by chance: the plain means' direction leans on it, the LDA direction discounts it. At half the
    # covariance (the runs use LDA_COVARIANCE, made for 1,920 features, where the sphere is far flatter than here).
    torch.manual_seed(1)

    def draw(n):
        labels = torch.arange(n) % 2
        x = torch.randn(n, 6) * 0.5
        x[:, 0] += labels * 1.5
        x[:, 1] = torch.randn(n) * 4
        return x.sign() * x.square(), labels  # squared with its sign: the head takes signed square roots back

    features, labels = draw(40)
    queries, truth = draw(4000)
    scores = {}
    for covariance in (0.0, 0.5):
        with torch.no_grad():
            logits = centroid_head(torch.nn.Linear(6, 2), features, labels, covariance)(queries)
        scores[covariance] = float((logits.argmax(1) == truth).float().mean())
    assert scores[0.5] > scores[0.0] + 0.15, scores  # 0.85 against 0.60


def test_a_head_kept_before_the_power_transform_reads_its_features_as_they_come():
    from core.methods.frozen import StandardizedHead

    torch.manual_seed(0)
    old = torch.nn.Linear(4, 3)
    state = {f"head.{k}": v for k, v in old.state_dict().items()} | {"mean": torch.zeros(4), "std": torch.ones(4)}
    head = StandardizedHead(torch.nn.Linear(4, 3), torch.zeros(4), torch.ones(4), power=0.5)
    head.load_state_dict(state)  # no "power" in it: strict loading still accepts it
    x = torch.randn(5, 4) * 3
    with torch.no_grad():
        assert float(head.power) == 1.0 and torch.allclose(head(x), old(x))


@pytest.mark.parametrize("classifier", ["centroids", "lda"])
def test_transfer_with_class_centroids_runs_without_an_optimiser_and_is_saved_as_a_head(
    classifier, splits, checkpoint, tmp_path
):
    from core.config import is_used
    from core.runs.store import RunStore
    from core.runs.train import execute

    cfg = preset("transfer", "recommended", arch=TINY, weights=checkpoint, resolution=32, device="cpu",
                 classifier=classifier)  # fmt: skip
    assert not is_used("epochs", cfg) and not is_used("lr", cfg)  # the Train page hides what does not apply
    store = RunStore(tmp_path / "runs")
    record = execute(cfg, splits, store, cache_dir=tmp_path / "cache")
    assert record.status == "finished" and record.metrics.test_acc > 0.5
    assert [row["index"] for row in record.history] == [1]
    assert store.load_weights(record.run_id).kind == "head"
    from core.runs.inference import predictor  # Try a model: the kept head takes the square roots as the run did

    probs = predictor(store, record, 3)(splits.test_x)
    assert float((probs.argmax(1) == splits.test_y).float().mean()) == pytest.approx(record.metrics.test_acc)
    assert float(store.load_weights(record.run_id).state["power"]) == 0.5


def test_train_loop_only_updates_trainable_parameters():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Linear(8, 3))
    model[1].requires_grad_(False)
    frozen = model[1].weight.clone()
    cfg = TrainConfig(epochs=3, batch_size=5, lr=0.01)
    step = supervised_step(model, torch.rand(20, 3, 2, 2), torch.arange(20) % 3, cfg, torch.device("cpu"), False,
                           lambda x, y: (x, y))  # fmt: skip
    params = [p for p in model.parameters() if p.requires_grad]
    result = train_loop(params, 20, cfg, step, device=torch.device("cpu"), set_train_mode=model.train)
    assert result.status == "finished" and len(result.history) == 3
    assert torch.equal(model[1].weight, frozen)
    assert not torch.equal(model[2].weight, torch.zeros_like(model[2].weight))


def test_stop_during_the_final_test_pass_keeps_the_last_check(splits):
    calls = {"n": 0}

    def should_stop():  # 2 epochs of 3 steps ask 6 times; the 7th question comes from the final test pass
        calls["n"] += 1
        return calls["n"] > 6

    record = fit(TrainConfig(**FAST | {"epochs": 2, "eval_every": 1}), splits, should_stop=should_stop)
    assert record.status == "stopped" and "final test pass" in record.message and len(record.history) == 2
    assert record.metrics.partial and record.metrics.test_acc == record.history[-1]["test_acc"]


def test_a_whitened_stem_stays_as_computed_from_the_labeled_images_while_the_rest_trains(splits):
    kept = {}
    cfg = preset("scratch", "recommended", **FAST | dict(arch="convnet_cifar", epochs=2, warmup_epochs=1))
    assert cfg.whiten_stem  # the preset's network comes with its whitened stem
    record = fit(cfg.with_(keep_weights=True), splits, keep_weights=lambda state, kind: kept.update(state))
    assert record.status == "finished"
    expected = create_model("convnet_cifar", len(splits.classes))
    expected.whiten_stem(splits.labeled_x)
    torch.manual_seed(cfg.seed)  # the run's own initialisation
    initial = create_model("convnet_cifar", len(splits.classes)).state_dict()
    assert torch.equal(kept["backbone.stem.0.weight"], expected.backbone.stem[0].weight)
    assert not torch.equal(kept["backbone.block1.conv1.weight"], initial["backbone.block1.conv1.weight"])


def test_a_run_with_mirror_test_time_augmentation_is_rebuilt_to_predict_as_it_was_evaluated(splits):
    from core.engine.predict import predict
    from core.runs.evaluate import kept_network
    from core.runs.record import RunRecord

    kept = {}
    cfg = preset(
        "scratch", "recommended", **FAST | dict(flip_test=True, keep_weights=True, warmup_epochs=1, precision="fp32")
    )
    record = fit(cfg, splits, keep_weights=lambda state, kind: kept.update(state))
    model = kept_network(RunRecord.from_dict(record.to_dict()), kept, len(splits.classes)).eval()
    logits = predict(model, splits.test_x, torch.device("cpu"), False)
    assert record.metrics.test_acc == float((logits.argmax(1) == splits.test_y).float().mean())
    model.flip_test = False
    assert not torch.allclose(predict(model, splits.test_x, torch.device("cpu"), False), logits, atol=1e-4)


def test_graphed_steps_follow_the_eager_loop(monkeypatch):
    """train_loop's graph branch (what a GPU replays as a CUDA graph: core.engine.cudagraph.GraphedSteps, eager
    here, with Adam's learning rate as a tensor) trains exactly as its eager branch: the same batches, the
    same schedule, the same rows, the same weights, and the same divergence check."""
    import core.engine.loop as loop
    from core.engine.cudagraph import GraphedSteps, graphable

    cfg = TrainConfig(epochs=4, batch_size=5, optimizer="adam", lr=0.01, schedule="cosine", warmup_epochs=1)
    x, y = torch.rand(20, 3, 2, 2), torch.arange(20) % 3
    replays = []

    class CountedSteps(GraphedSteps):
        def step(self, idx):
            replays.append(len(idx))
            return super().step(idx)

    monkeypatch.setattr(loop, "GraphedSteps", CountedSteps)
    monkeypatch.setattr(loop, "graphable", lambda *args: True)  # a CPU never records graphs: take the branch

    def trained(cfg: TrainConfig, graph: bool, nan_at: int = 0):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        plain = supervised_step(model, x, y, cfg, torch.device("cpu"), False, lambda a, b: (a, b))
        calls = []

        def step(idx):  # with nan_at: that step's loss is NaN, as a blown-up network's would be
            calls.append(1)
            loss, right = plain(idx)
            return (loss * float("nan") if len(calls) == nan_at else loss), right

        result = train_loop(list(model.parameters()), 20, cfg, step, device=torch.device("cpu"), graph=graph)
        return model, result

    (eager, eager_run), (replayed, replayed_run) = trained(cfg, False), trained(cfg, True)
    assert replays == [5] * 16  # every step went through the graph branch
    for a, b in zip(eager.parameters(), replayed.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert [r["lr"] for r in replayed_run.history] == pytest.approx([r["lr"] for r in eager_run.history])
    assert [r["train_loss"] for r in replayed_run.history] == pytest.approx(
        [r["train_loss"] for r in eager_run.history]
    )
    eager_nan, replayed_nan = trained(cfg, False, nan_at=7)[1], trained(cfg, True, nan_at=7)[1]
    assert (
        eager_nan.status == replayed_nan.status == "diverged"
        and len(eager_nan.history) == len(replayed_nan.history) == 1
    )
    assert not graphable(cfg, torch.device("cpu"), 20)  # a CPU never records graphs
    assert not graphable(cfg.with_(optimizer="sgd"), torch.device("cuda"), 20)  # SGD keeps its lr on the host
    assert not graphable(cfg, torch.device("cuda"), 21)  # a short last batch: shapes change
    assert graphable(cfg, torch.device("cuda"), 20)


def test_the_periodic_check_leaves_batchnorm_statistics_alone(splits):
    """core.methods.base.subset_check, the check of every method that trains a network (fixmatch and spreadtune
    with ema=0 pass the training network itself): evaluation mode, so the test images teach it nothing."""
    from core.methods.base import RunContext, subset_check

    cfg = TrainConfig(arch=TINY, eval_subset=20)
    model = create_model(TINY, 3, "", 32, False).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    acc = subset_check(RunContext(cfg, splits, model, torch.device("cpu"), False), model)()
    assert 0 <= acc <= 1 and not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
