"""Timed probes: how long one training step, one inference batch, one head step, one k-NN graph or one read
of cached features takes on this device, measured now (in a worker, at an idle moment). core.methods.step_timings
keeps what they measure and builds estimates from it."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from core import settings
from core.config import TrainConfig
from core.data.splits import save_cache
from core.engine.device import autocast, place
from core.engine.fusion import for_inference
from core.engine.optim import make_optimizer
from core.methods.frozen import StandardizedHead, train_head
from core.models import create_model

# At most this many images per timed step on the CPU, scaled beyond. Not smaller: a step's time grows more slowly
# than its batch (fixed costs per step), so FixMatch's 144-image step, timed on 64 images and scaled, read
# 1.13-1.37x its real time on the notebook's recipe.
PROBE = 160
# A probe times at least TIMED_STEPS steps (TIMED_BATCHES inference batches), after one not counted, and goes on
# until the timing window has passed (core.settings: SMALLDATA_TIMING_WINDOW, 2 s), then takes the mean. Why so
# long, and a mean: this shared 2-core host's speed swings within seconds (the same 64-image batch at 160 px took
# 0.14 to 0.29 s a batch, in three rounds of ten a few seconds apart), and a run pays for its slow spells too. As
# the median of 5 batches (about a second), one bench's inference timings of the same network read 0.180 and
# 0.230 s, and its cold runs took 1.35x and 1.01x their feature estimates; the head's 30 ms probe read 0.65 and
# 1.08 ms a step for the same head, and selftrain's cached runs took 0.69-0.72x their estimates.
TIMED_STEPS = 7
TIMED_BATCHES = 5
MOST_STEPS = 500  # on a GPU a step takes milliseconds: enough to average over


def seconds_of(work: Callable[[], object], device: torch.device | None = None) -> float:
    """Wall seconds of one call of work (on a GPU, until its kernels have finished)."""
    t = time.perf_counter()
    work()
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def measure_step(arch: str, resolution: int, batch: int, device: str, bf16: bool, train: bool, optimizer: str) -> float:
    """Seconds for one training step (or one inference batch) of `batch` 32x32 images, measured now, with the
    run's own optimiser. On the CPU the pass is timed on at most PROBE images and scaled to the batch; the
    optimiser's update, whose cost depends on the weights and not on the batch, is timed apart and added once.

    Why so (ResNet-18 for CIFAR, 10 images a step, bf16, 2 cores, ten steps each): the forward and backward
    pass took 0.159 s (median) but 0.128-0.149 s at its fastest, and Adam's update 0.025 s against SGD's
    0.003 s. Timed as the fastest of two SGD steps, the notebook's Adam runs took 1.23-1.30x their estimate;
    the loop's own steps come to a typical pass plus the run's update. An inference pass timed as the fastest
    of two read cold feature extractions at 0.68x to 0.92x of their estimate; both are now a mean over a while
    (for_a_while: the reasons are at TIMED_STEPS)."""
    probe = min(batch, PROBE) if device == "cpu" else batch
    dev = torch.device(device)
    model = place(create_model(arch, 10, "", resolution, False), dev)  # as fit runs it
    x = torch.rand(probe, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (probe,), device=dev)
    opt = make_optimizer(TrainConfig(optimizer=optimizer), list(model.parameters()))

    def timed(work) -> float:
        return seconds_of(work, dev)

    def forward_backward() -> None:
        model.train()
        with autocast(dev, bf16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()

    def inference() -> None:
        model.eval()
        with torch.no_grad(), autocast(dev, bf16):
            model(x)

    if not train:  # as extraction and test passes run it: BatchNorm folded (core.engine.fusion)
        model = for_inference(model.eval())
        inference()  # the first call pays for kernel selection and memory
        return statistics.fmean(for_a_while(lambda: timed(inference), TIMED_BATCHES)) * batch / probe
    timed(forward_backward)  # the first step pays for kernel selection, memory and the optimiser's state
    timed(opt.step)
    steps = for_a_while(lambda: (timed(forward_backward), timed(opt.step)), TIMED_STEPS)
    return statistics.fmean(p for p, _ in steps) * batch / probe + statistics.fmean(u for _, u in steps)


def for_a_while(timed_work, at_least: int) -> list:
    """timed_work's results (each holding the seconds it took), called at least `at_least` times and on
    until the timing window's seconds of work have passed (at most MOST_STEPS calls)."""
    window = settings.current().timing_window_s
    results, spent = [], 0.0
    while len(results) < at_least or (spent < window and len(results) < MOST_STEPS):
        results.append(timed_work())
        spent += sum(results[-1]) if isinstance(results[-1], tuple) else results[-1]
    return results


HEAD_PROBE = dict(items=800, epochs=4)  # 8 steps an epoch: between the probe's 1-3 and labelspread's 201


def measure_head_step(dim: int, batch: int = 100) -> float:
    """One step of a linear head on standardised features (what frozen methods train), timed through the
    engine's own loop (core.methods.frozen.train_head): its shuffling, schedule and rows cost as much as the
    step itself here. (Timed as bare optimiser steps, cached selftrain and labelspread runs took 1.5-2.2x
    their estimates, which are mostly head steps.)"""
    features = torch.randn(HEAD_PROBE["items"], dim)
    labels = torch.randint(0, 10, (HEAD_PROBE["items"],))
    cfg = TrainConfig(epochs=HEAD_PROBE["epochs"], batch_size=batch, optimizer="adamw", lr=1e-3, weight_decay=1e-2,
                      schedule="cosine", eval_every=0)  # fmt: skip  # as FROZEN_128 trains its heads
    head = StandardizedHead.fitted_to(torch.nn.Linear(dim, 10), features)
    cpu = torch.device("cpu")
    train_head(head, features, labels, cfg.with_(epochs=1), cpu)  # the first steps allocate the optimiser's state
    per_call = cfg.epochs * -(-HEAD_PROBE["items"] // batch)

    def one_call() -> float:
        return seconds_of(lambda: train_head(head, features, labels, cfg, cpu))

    return statistics.fmean(for_a_while(one_call, 1)) / per_call


def measure_centroid_pass(dim: int, rows: int = 4096) -> float:
    """Seconds per feature row for a head of class centroids to predict (core.engine.predict, as a run's test
    pass does), its power transform included: the square roots of 10,000 test images' 1,920 features take
    0.05 s, a third of a cached transfer run, which an estimate without them read at 0.39-0.57 of its runs."""
    from core.engine.predict import predict
    from core.methods.centroids import centroid_head

    features = torch.randn(rows, dim)
    head = centroid_head(torch.nn.Linear(dim, 10), features[:100], torch.arange(100) % 10)
    cpu = torch.device("cpu")

    def timed() -> float:
        return seconds_of(lambda: predict(head, features, cpu, False, uint8_images=False))

    timed()
    return statistics.fmean(for_a_while(timed, TIMED_BATCHES)) / rows


LOAD_PROBE_ROWS = (4096, 2048)  # 32 MiB of float32 features: a cached test set's are 40-80 MB


def measure_load(folder: Path | None) -> float:
    """Seconds per byte to read a cached feature file back (torch.load, as core.methods.frozen.cached_features
    reads one), timed on a file written for the purpose in `folder` (the cache's own disk), else in $TMPDIR.
    Why: a cached run of a linear head reads its features for longer than it trains (transfer / quick: 0.2 of
    its 0.3 s), and an estimate that counted them as free read 0.73-0.78x its runs."""
    where = folder if folder is not None and folder.is_dir() else None
    with tempfile.TemporaryDirectory(dir=where, prefix="load-probe-") as tmp:
        path = Path(tmp) / "features.pt"
        save_cache(path, torch.randn(*LOAD_PROBE_ROWS))
        if not path.exists():
            return 0.0  # nowhere to write: nothing is cached either

        def timed() -> float:
            return seconds_of(lambda: torch.load(path, weights_only=True))

        timed()  # the first read may come from the disk; a cache's files are mostly read back soon after
        return statistics.fmean(for_a_while(timed, TIMED_BATCHES)) / path.stat().st_size


def measure_graph(sizes: tuple[int, int], dim: int, k: int) -> tuple[float, float, float]:
    """(quadratic, linear, fixed) seconds of label spreading on the k-NN graph of `dim`-long features:
    the graph's similarity blocks grow with n^2; the whitening's covariance and the spreading's
    iterations with n; the whitening's eigendecomposition (dim x dim) not at all."""
    from core.methods.knn_graph import knn_graph, label_spread

    t = time.perf_counter()
    torch.linalg.eigh(torch.eye(dim, dtype=torch.float64) + 1e-3)
    fixed = time.perf_counter() - t
    times = []
    for n in sizes:
        feats = torch.randn(n, dim)
        t = time.perf_counter()
        label_spread(knn_graph(feats, k), torch.arange(10), 10)
        times.append(max(time.perf_counter() - t - fixed, 0.0))
    # t - fixed = a n^2 + b n at both sizes
    a = (times[1] / sizes[1] - times[0] / sizes[0]) / (sizes[1] - sizes[0])
    return max(a, 0.0), max((times[0] - a * sizes[0] ** 2) / sizes[0], 0.0), fixed


def measure_spread(n: int, k: int, classes: int = 10) -> float:
    """Seconds per node and class of one label spreading, prior included, over a k-NN graph of n nodes (random
    features: the graph's shape, about k to 2k links a node, is what its sparse products cost)."""
    from core.methods.knn_graph import knn_graph, label_spread

    graph = knn_graph(torch.randn(n, 64), k)
    labels = torch.arange(classes)
    prior = torch.full((n - classes, classes), 1 / classes)

    def timed() -> float:
        return seconds_of(lambda: label_spread(graph, labels, classes, prior=prior))

    timed()  # the first call allocates
    return statistics.fmean(for_a_while(timed, 1)) / (n * classes)


def measure_fold(arch: str) -> float:
    """Seconds to fold a network's BatchNorm layers into its convolutions (core.engine.fusion), which every
    feature extraction does once: 0.05-0.15 s for MobileNetV2, a third of extracting 100 images at 128 px."""
    model = create_model(arch, 10).eval()
    for_inference(model)  # the first call imports and warms torch.fx
    return statistics.fmean(for_a_while(lambda: seconds_of(lambda: for_inference(model)), 3))


def measure_startup(cfg: TrainConfig) -> float:
    """Seconds to build cfg's network with its weights, as every run does first. A mean over the timing window:
    timed once, MobileNetV2's build read 0.068 and 0.080 s in two caches and 0.116 and 0.135 s in two others, the
    whole of a cached transfer run's estimate swinging with it (0.42 to 1.27 of runs of under a second)."""
    weights = cfg.weights if cfg.weights != "imagenet" else ""  # a download is not a cost of the run

    def build() -> float:
        return seconds_of(lambda: create_model(cfg.arch, 10, weights, cfg.resolution, cfg.normalize))

    return statistics.fmean(for_a_while(build, 2))
