"""Many seeds at once (core.runs.multiseed): each stacked seed is the run it would have been alone."""

import copy

import pytest
import torch

from core.access import SINGLE_USER as ME
from core.config import ConfigError
from core.methods.registry import preset
from core.models import create_model
from core.runs.multiseed import fit_seeds
from core.runs.train import fit
from tests.conftest import TINY

FAST = dict(arch=TINY, epochs=6, batch_size=10, eval_every=2, eval_subset=30, device="cpu", precision="fp32")
SEEDS = [0, 1, 2]


def same_run(stacked, alone, atol=1e-4) -> None:
    assert stacked.status == alone.status and stacked.message == alone.message
    assert stacked.config == alone.config and len(stacked.history) == len(alone.history)
    for a, b in zip(stacked.history, alone.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=atol)
        assert a["train_acc"] == pytest.approx(b["train_acc"], abs=1e-9)
        assert (a["test_acc"] is None) == (b["test_acc"] is None)
        assert a["test_acc"] is None or a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-9)
        assert a["lr"] == pytest.approx(b["lr"])
    assert stacked.metrics.test_acc == pytest.approx(alone.metrics.test_acc, abs=1e-9)
    assert stacked.metrics.train_acc == pytest.approx(alone.metrics.train_acc, abs=1e-9)
    assert stacked.metrics.confusion == alone.metrics.confusion


def logits(state, splits) -> torch.Tensor:
    """What a kept network says about the test images. Not its raw weights: Adam turns the zero gradient of
    a convolution's bias before BatchNorm into steps of noise that BatchNorm then cancels."""
    model = create_model(TINY, len(splits.classes))
    model.load_state_dict(state)
    with torch.no_grad():
        return model.eval()(splits.test_x.float() / 255)


@pytest.mark.parametrize(
    "recipe",
    [
        dict(augment="flip_crop", optimizer="sgd", lr=0.05, nesterov=True, weight_decay=5e-4, schedule="cosine",
             warmup_epochs=1, label_smoothing=0.1),  # the scratch recipe's shape
        dict(augment="flip_crop_mixup", optimizer="adam", lr=3e-3),  # soft targets, Adam's state
    ],
)  # fmt: skip
def test_each_stacked_seed_equals_the_same_seed_trained_alone(splits, recipe):
    cfg = preset("scratch", "recommended", **FAST | recipe | {"keep_weights": True})
    kept = {}
    stacked = fit_seeds(cfg, SEEDS, splits, stack=True, keep_weights=lambda i, state, kind: kept.update({i: state}))
    alone = [fit(cfg.with_(seed=s), splits, keep_weights=lambda state, kind, s=s: kept.update({("a", s): state}))
             for s in SEEDS]  # fmt: skip
    for i, (a, b) in enumerate(zip(stacked, alone, strict=True)):
        assert a.config.seed == SEEDS[i]
        same_run(a, b)
        assert a.diagnostics["stacked_seeds"] == SEEDS
    for i, s in enumerate(SEEDS):  # the kept networks (BatchNorm's running statistics included) agree
        torch.testing.assert_close(logits(kept[i], splits), logits(kept[("a", s)], splits), atol=1e-4, rtol=1e-4)
    # ...and the seeds did differ from each other: the comparison above is not of one run with itself
    assert stacked[0].history[0]["train_loss"] != stacked[1].history[0]["train_loss"]


def test_fine_tuning_the_last_block_stacks_too(splits, checkpoint):
    cfg = preset("transfer", "notebook", **FAST | dict(weights=checkpoint, resolution=32, normalize=False,
                                                       finetune="last", lr=1e-2))  # fmt: skip
    stacked = fit_seeds(cfg, [3, 4], splits, stack=True)
    for a, seed in zip(stacked, [3, 4], strict=True):
        same_run(a, fit(cfg.with_(seed=seed), splits))


def test_a_stopped_seed_leaves_the_group_and_the_others_go_on(splits):
    cfg = preset("scratch", "recommended", **FAST | dict(lr=0.01, warmup_epochs=1))
    rows = {0: [], 1: []}
    stacked = fit_seeds(cfg, [0, 1], splits, stack=True, on_row=lambda i, row: rows[i].append(row),
                        should_stop=lambda i: i == 1 and len(rows[1]) >= 2)  # fmt: skip
    assert stacked[0].status == "finished" and len(stacked[0].history) == 6
    assert stacked[1].status == "stopped" and len(stacked[1].history) == 2 and "epoch 3" in stacked[1].message
    assert stacked[1].metrics.partial  # its full test pass skipped, as a stopped run's is
    same_run(stacked[0], fit(cfg, splits))


def test_a_diverged_seed_is_recorded_as_alone_and_does_not_spoil_the_others(splits, monkeypatch):
    import core.runs.train

    def poisoned(*args, **kwargs):  # seed 1's weights have already blown up
        model = create_model(*args, **kwargs)
        if torch.initial_seed() == 1:
            torch.nn.init.constant_(model.head.weight, float("inf"))
        return model

    monkeypatch.setattr(core.runs.train, "create_model", poisoned)  # core.runs.train.seeded_model builds both ways
    cfg = preset("scratch", "recommended", **FAST)
    stacked = fit_seeds(cfg, SEEDS, splits, stack=True)
    alone = [fit(cfg.with_(seed=s), splits) for s in SEEDS]
    assert [r.status for r in alone] == ["finished", "diverged", "finished"]
    assert "epoch 1" in stacked[1].message and stacked[1].history == []
    for a, b in zip(stacked, alone, strict=True):
        same_run(a, b)


def test_one_after_another_where_stacking_does_not_pay_gives_the_same_runs(splits):
    cfg = preset("scratch", "recommended", **FAST)
    sequential = fit_seeds(cfg, [5, 6], splits, stack=False)
    assert [r.config.seed for r in sequential] == [5, 6]
    for a, seed in zip(sequential, [5, 6], strict=True):
        b = fit(cfg.with_(seed=seed), splits)
        assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
        assert a.metrics.test_acc == b.metrics.test_acc and "stacked_seeds" not in a.diagnostics


def test_recipes_that_train_no_whole_network_or_bad_seed_lists_are_refused(splits, checkpoint):
    probe = preset("transfer", "recommended", arch=TINY, weights=checkpoint, resolution=32, device="cpu")
    with pytest.raises(ConfigError, match="cannot stack"):
        fit_seeds(probe, [0, 1], splits, stack=True)
    with pytest.raises(ConfigError, match="different seeds"):
        fit_seeds(preset("scratch", "recommended", **FAST), [1, 1], splits)


def test_a_worker_trains_the_queued_seeds_of_one_recipe_together_and_saves_each(dataset_dir, tmp_path, monkeypatch):
    """What "Repeat with N seeds" queues: one job per seed; a worker on a machine where stacking pays
    (here forced with SMALLDATA_STACK_SEEDS) takes them as one group, and nothing else."""
    from core.jobs.queue import JobQueue
    from core.jobs.worker import work
    from core.runs.store import RunStore

    monkeypatch.setenv("SMALLDATA_STACK_SEEDS", "always")
    queue = JobQueue(tmp_path / "runs" / "queue.sqlite")
    cfg = preset("scratch", "recommended", **FAST | {"n_labeled": 30})
    ids = [queue.submit(cfg.with_(seed=s), str(dataset_dir), by=ME) for s in SEEDS]
    other = queue.submit(cfg.with_(lr=0.01), str(dataset_dir), by=ME)  # another recipe: not one of the group
    assert work(queue.path, job_id=ids[0]) == 1
    jobs = [queue.get(i) for i in ids]
    assert [j.state for j in jobs] == ["finished"] * 3 and len({j.pid for j in jobs}) == 1
    assert all(len(j.history) == 6 for j in jobs) and queue.get(other).state == "queued"
    records = [RunStore(tmp_path / "runs").load(j.run_id) for j in jobs]
    assert [r.config.seed for r in records] == SEEDS
    assert all(r.diagnostics["stacked_seeds"] == SEEDS for r in records)
    monkeypatch.setenv("SMALLDATA_STACK_SEEDS", "never")
    again = [queue.submit(cfg.with_(seed=s), str(dataset_dir), by=ME) for s in (7, 8)]
    assert work(queue.path, job_id=again[0]) == 1 and queue.get(again[1]).state == "queued"


def test_the_scratch_recipes_network_stacks_too(splits):
    # The preset's network (convnet_cifar: max-pool before BatchNorm, GELU, global max-pool) under vmap.
    # A small lr: max-pooling routes each gradient through one argmax, and a rounding difference that flips
    # one (the grouped convolution sums in another order) grows to 1e-4 in two epochs at lr 0.005, 1e-3 at 0.05.
    arch = preset("scratch", "recommended").arch
    cfg = preset("scratch", "recommended", **FAST | dict(arch=arch, epochs=2, warmup_epochs=1, lr=5e-4, eval_every=1))
    for a, seed in zip(fit_seeds(cfg, [0, 1], splits, stack=True), [0, 1], strict=True):
        same_run(a, fit(cfg.with_(seed=seed), splits))


def test_batch_norm_in_plain_ops_is_batch_norm_and_stacks_under_vmap():
    """What stacked seeds use on a GPU (core.engine.stacked.plain_batch_norm): nn.BatchNorm2d's outputs and
    running statistics, in training and in evaluation, alone and for two stacked layers under vmap."""
    from torch.func import functional_call, stack_module_state, vmap

    from core.engine.stacked import plain_batch_norm

    torch.manual_seed(0)
    layers = [torch.nn.BatchNorm2d(4) for _ in range(2)]
    for bn in layers:
        torch.nn.init.normal_(bn.weight)
        torch.nn.init.normal_(bn.bias)
    x = torch.randn(2, 6, 4, 3, 3) * 3 + 1
    reference = [copy.deepcopy(bn) for bn in layers]
    expected = [bn(xi) for bn, xi in zip(reference, x, strict=True)]  # training mode: batch statistics
    params, buffers = stack_module_state(layers)
    base = copy.deepcopy(layers[0])
    with plain_batch_norm(base, True):
        got = vmap(lambda p, b, xi: functional_call(base, (p, b), (xi,)))(params, buffers, x)
    for i in range(2):
        assert torch.allclose(got[i], expected[i], atol=1e-5)
        assert torch.allclose(buffers["running_mean"][i], reference[i].running_mean, atol=1e-6)
        assert torch.allclose(buffers["running_var"][i], reference[i].running_var, atol=1e-5)
        assert int(buffers["num_batches_tracked"][i]) == 1
    base.eval()
    with plain_batch_norm(base, True):
        evaluated = vmap(lambda p, b, xi: functional_call(base, (p, b), (xi,)))(params, buffers, x)
    for i in range(2):
        assert torch.allclose(evaluated[i], reference[i].eval()(x[i]), atol=1e-5)
    assert "forward" not in vars(base)  # the layer's own forward is back
