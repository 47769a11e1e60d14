"""The step times estimates are built on: what is measured, and under which key it is kept."""

import pytest

import core.methods.probes as probes
import core.methods.step_timings as st
from core.config import TrainConfig
from tests.conftest import TINY


def test_a_training_step_is_timed_with_the_runs_own_optimiser_and_an_inference_pass_once(monkeypatch, tmp_path):
    asked = []

    def measure(arch, resolution, batch, device, bf16, train, optimizer):
        asked.append((train, optimizer))
        return 0.5 if optimizer == "adam" else 0.1

    monkeypatch.setattr(probes, "measure_step", measure)
    steps = {}
    for optimizer in ("adam", "sgd", "adam"):
        timing = st.MeasuredTiming(TrainConfig(arch=TINY, optimizer=optimizer, device="cpu"), cache_dir=tmp_path)
        steps[optimizer] = timing.train_step(TINY, 32, 8)
        timing.per_image(TINY, 32)
    # Adam's update costs several times SGD's on the same network: each is measured, the repeat is not.
    assert asked == [(True, "adam"), (False, "-"), (True, "sgd")]
    assert steps == {"adam": 0.5, "sgd": 0.1}
    assert st.StepTimings(tmp_path).known  # kept in the cache folder, read by the next process


def test_the_measured_step_adds_the_optimisers_update_once_to_the_scaled_pass(monkeypatch):
    # On the CPU, a batch beyond PROBE images is timed at PROBE and scaled; the update is not per image. A clock
    # that advances only while work is timed: each pass takes 1.0 s, each update 0.3 s.
    durations = iter([1.0, 0.3] * (1 + probes.TIMED_STEPS))
    clock = {"t": 0.0, "reads": 0}

    def perf_counter():
        clock["reads"] += 1
        if clock["reads"] % 2 == 0:  # the second read of each timed piece of work
            clock["t"] += next(durations)
        return clock["t"]

    monkeypatch.setattr(probes.time, "perf_counter", perf_counter)
    assert probes.measure_step(TINY, 32, probes.PROBE * 2, "cpu", False, True, "sgd") == pytest.approx(1.0 * 2 + 0.3)


def test_a_probe_goes_on_until_its_timing_window_has_passed(monkeypatch):
    # Each timed piece of work reports 0.25 s: at least `at_least` of them, then on until the window is spent.
    monkeypatch.setenv("SMALLDATA_TIMING_WINDOW", "1")
    assert len(probes.for_a_while(lambda: 0.25, 3)) == 4
    assert len(probes.for_a_while(lambda: (0.3, 0.2), 1)) == 2  # a step and its update count together
    monkeypatch.setenv("SMALLDATA_TIMING_WINDOW", "0")
    assert len(probes.for_a_while(lambda: 0.25, 3)) == 3


def test_cached_features_cost_the_reading_of_their_file_back(splits, checkpoint, tmp_path, monkeypatch):
    import torch

    from core.methods.frozen import feature_key, feature_path
    from core.methods.registry import preset
    from core.methods.transfer import features_seconds
    from core.runs.train import fit

    cfg = preset("transfer", "quick", arch=TINY, weights=checkpoint, resolution=32, normalize=False, device="cpu",
                 n_labeled=30, epochs=2)  # fmt: skip
    cache = tmp_path / "cache"
    timing = st.MeasuredTiming(cfg, splits, cache)
    monkeypatch.setattr(timing, "per_image", lambda arch, resolution: 1.0)  # an extraction: 1 s an image
    monkeypatch.setattr(timing, "load_seconds", lambda nbytes: nbytes * 1e-9)  # a read: 1 s a GB
    monkeypatch.setattr(timing, "fold", lambda arch: 0.5)  # folding the network before extracting: 0.5 s
    n_test = len(splits.test_y)
    # not cached yet: the network folded once, then every image through it
    assert features_seconds(cfg, n_test, "test", timing) == n_test + 0.5
    assert fit(cfg, splits, cache_dir=cache).status == "finished"
    cached = torch.load(feature_path(cache, feature_key(cfg, splits.fingerprint, "test")), weights_only=True)
    # Cached now: what reading the file back costs, for as many bytes as the file's features hold.
    assert features_seconds(cfg, n_test, "test", timing) == pytest.approx(cached.numel() * 4 * 1e-9)


def test_the_read_back_probe_times_a_file_of_its_own_and_leaves_nothing_behind(tmp_path):
    per_byte = probes.measure_load(tmp_path)
    assert 0 < per_byte < 1e-6  # slower than 1 MB/s would be no disk at all
    assert list(tmp_path.iterdir()) == []


def test_the_fold_probe_times_folding_a_network_with_batchnorm():
    seconds = probes.measure_fold(TINY)  # tiny_cnn has two BatchNorm layers to fold
    assert 0 < seconds < 5
