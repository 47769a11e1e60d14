"""How long will a run take on this device? Measured, not guessed: a few timed steps, extrapolated
by the method's own `estimate`; features already in the cache cost nothing."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from core import settings
from core.config import TrainConfig, cv_fold_count
from core.data.splits import Splits
from core.engine.device import autocast, place, resolve_device, use_bf16
from core.engine.optim import make_optimizer
from core.methods.base import DataSizes
from core.methods.frozen import StandardizedHead, feature_key, feature_path, labeled_key, train_head
from core.methods.pseudo_labels import unlabeled_key, unlabeled_subset
from core.methods.registry import get_method
from core.models import create_model, state_dict_bytes

# At most this many images per timed step on the CPU, scaled beyond. Not smaller: a step's time grows more slowly
# than its batch (fixed costs per step), so FixMatch's 144-image step, timed on 64 images and scaled, read
# 1.13-1.37x its real time on the notebook's recipe.
PROBE = 160
# A probe times at least TIMED_STEPS steps (TIMED_BATCHES inference batches), after one not counted, and goes on
# until the timing window has passed (core.settings: SMALLDATA_TIMING_WINDOW, 2 s), then takes the mean. Why so
# long, and a mean: this shared 2-core host's speed swings within seconds (the same 64-image batch at 160 px took
# 0.14 to 0.29 s, three rounds a second apart), and a run pays for its slow spells too. As the median of 5 batches
# (about a second), one bench's inference timings of the same network read 0.180 and 0.230 s, and its cold runs
# took 1.35x and 1.01x their feature estimates; the head's 30 ms probe read 0.65 and 1.08 ms a step for the same
# head, and selftrain's cached runs took 0.69-0.72x their estimates.
TIMED_STEPS = 7
TIMED_BATCHES = 5
MOST_STEPS = 500  # on a GPU a step takes milliseconds: enough to average over
TIMINGS_FILE = "timings.json"


class EstimateUnavailable(RuntimeError):
    """No timing is known for this model yet, and measuring now would time the run that is training too."""


def _measure(arch: str, resolution: int, batch: int, device: str, bf16: bool, train: bool, optimizer: str) -> float:
    """Seconds for one training step (or one inference batch) of `batch` 32x32 images, measured now, with the
    run's own optimiser. On the CPU the pass is timed on at most PROBE images and scaled to the batch; the
    optimiser's update, whose cost depends on the weights and not on the batch, is timed apart and added once.

    Why so (ResNet-18 for CIFAR, 10 images a step, bf16, 2 cores, ten steps each): the forward and backward
    pass took 0.159 s (median) but 0.128-0.149 s at its fastest, and Adam's update 0.025 s against SGD's
    0.003 s. Timed as the fastest of two SGD steps, the notebook's Adam runs took 1.23-1.30x their estimate;
    the loop's own steps come to a typical pass plus the run's update. An inference pass timed as the fastest
    of two read cold feature extractions at 0.68x to 0.92x of their estimate; both are now a mean over a while
    (_for_a_while: the reasons are at TIMED_STEPS)."""
    probe = min(batch, PROBE) if device == "cpu" else batch
    dev = torch.device(device)
    model = place(create_model(arch, 10, "", resolution, False), dev)  # as fit runs it
    x = torch.rand(probe, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (probe,), device=dev)
    opt = make_optimizer(TrainConfig(optimizer=optimizer), list(model.parameters()))

    def timed(work) -> float:
        t = time.perf_counter()
        work()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

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

    if not train:
        inference()  # the first call pays for kernel selection and memory
        return statistics.fmean(_for_a_while(lambda: timed(inference), TIMED_BATCHES)) * batch / probe
    timed(forward_backward)  # the first step pays for kernel selection, memory and the optimiser's state
    timed(opt.step)
    steps = _for_a_while(lambda: (timed(forward_backward), timed(opt.step)), TIMED_STEPS)
    return statistics.fmean(p for p, _ in steps) * batch / probe + statistics.fmean(u for _, u in steps)


def _for_a_while(timed_work, at_least: int) -> list:
    """timed_work's results (each holding the seconds it took), called at least `at_least` times and on
    until the timing window's seconds of work have passed (at most MOST_STEPS calls)."""
    window = settings.current().timing_window_s
    results, spent = [], 0.0
    while len(results) < at_least or (spent < window and len(results) < MOST_STEPS):
        results.append(timed_work())
        spent += sum(results[-1]) if isinstance(results[-1], tuple) else results[-1]
    return results


HEAD_PROBE = dict(items=800, epochs=4)  # 8 steps an epoch: between the probe's 1-3 and labelspread's 201


def _measure_head_step(dim: int, batch: int = 100) -> float:
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
        t = time.perf_counter()
        train_head(head, features, labels, cfg, cpu)
        return time.perf_counter() - t

    return statistics.fmean(_for_a_while(one_call, 1)) / per_call


def _measure_graph(sizes: tuple[int, int], dim: int, k: int) -> tuple[float, float, float]:
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


class StepTimings:
    """Measured step times, kept in memory and in cache_dir/timings.json, so that they are measured
    once, at an idle moment: a timing taken while a run trains would time that run as well."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.path = Path(cache_dir) / TIMINGS_FILE if cache_dir else None
        self.known: dict[str, float] = {}
        if self.path is not None and self.path.exists():
            try:
                self.known = {k: float(v) for k, v in json.loads(self.path.read_text()).items()}
            except (ValueError, OSError, AttributeError):
                self.known = {}  # a damaged file is measured again, never trusted

    def get(
        self, arch: str, resolution: int, batch: int, device: str, bf16: bool, train: bool, busy: bool,
        optimizer: str = "sgd",
    ) -> float:  # fmt: skip
        # "cl": timed in channels_last, as core.engine.device.place runs every model; "opt": a training step with
        # the run's own optimiser; "p160": on up to PROBE images; "w": the mean over a timing window (_for_a_while).
        # Older timings are retaken.
        optimizer = optimizer if train else "-"
        tags = f"cl|opt|p{PROBE}|w"
        key = f"{torch.__version__}|{tags}|{device}|{arch}|{resolution}|{batch}|{int(bf16)}|{int(train)}|{optimizer}"
        return self._known(key, busy, lambda: _measure(arch, resolution, batch, device, bf16, train, optimizer))

    def head_step(self, dim: int, busy: bool) -> float:
        # "loop": timed through the engine's loop; "w": over a timing window. Older timings are retaken.
        return self._known(f"{torch.__version__}|head_loop_w|{dim}", busy, lambda: _measure_head_step(dim))

    def graph(self, n: int, dim: int, k: int, busy: bool) -> float:
        # Measured at up to 20,000 nodes: large enough that memory traffic counts as it will at 50,000
        # (about 8 s in all, once, for 1,920-long features), and no larger than the pool itself.
        big = max(400, min(n, 20_000))
        sizes = (big // 4, big)
        # "w": the whitened graph (core.methods.knn_graph.whitened); older timings are retaken.
        ka, kb, kc = (f"{torch.__version__}|graph_w_{part}|{sizes}|{dim}|{k}" for part in ("n2", "n", "1"))
        if any(key not in self.known for key in (ka, kb, kc)):
            if busy:
                raise EstimateUnavailable("a run is training: the estimate waits for an idle moment")
            self.known[ka], self.known[kb], self.known[kc] = _measure_graph(sizes, dim, k)
            self._save()
        return self.known[ka] * n * n + self.known[kb] * n + self.known[kc]

    def _known(self, key: str, busy: bool, measure) -> float:
        if key not in self.known:
            if busy:
                raise EstimateUnavailable("a run is training: the estimate waits for an idle moment")
            self.known[key] = measure()
            self._save()
        return self.known[key]

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.known))
            tmp.replace(self.path)
        except OSError:
            pass  # a read-only cache folder: the timings stay in memory


_LOADED: dict[str | None, tuple[int, StepTimings]] = {}


def step_timings(cache_dir: str | None) -> StepTimings:
    """The timings of cache_dir, read again when the file changed (a worker measured new ones)."""
    path = Path(cache_dir) / TIMINGS_FILE if cache_dir else None
    try:
        stamp = path.stat().st_mtime_ns if path is not None else 0
    except OSError:
        stamp = 0
    if cache_dir not in _LOADED or _LOADED[cache_dir][0] != stamp:
        _LOADED[cache_dir] = (stamp, StepTimings(Path(cache_dir) if cache_dir else None))
    return _LOADED[cache_dir][1]


def _measure_startup(cfg: TrainConfig) -> float:
    t = time.perf_counter()
    weights = cfg.weights if cfg.weights != "imagenet" else ""  # a download is not a cost of the run
    create_model(cfg.arch, 10, weights, cfg.resolution, cfg.normalize)
    return time.perf_counter() - t


class MeasuredTiming:
    """core.methods.base.Timing on this device, with the feature cache of `splits` in `cache_dir`."""

    def __init__(
        self, cfg: TrainConfig, splits: Splits | None = None, cache_dir: Path | None = None, busy: bool = False
    ) -> None:
        self.device = resolve_device(cfg.device)
        self.bf16 = use_bf16(self.device, cfg.precision)
        self.splits = splits
        self.cache_dir = cache_dir
        self.busy = busy
        self.optimizer = cfg.optimizer  # a step's update costs what the run's optimiser costs
        self.steps = step_timings(str(cache_dir) if cache_dir else None)

    def train_step(self, arch: str, resolution: int, batch: int) -> float:
        return self.steps.get(arch, resolution, batch, str(self.device), self.bf16, True, self.busy, self.optimizer)

    def per_image(self, arch: str, resolution: int) -> float:
        batch = 64 if self.device.type == "cpu" else 1024
        return self.steps.get(arch, resolution, batch, str(self.device), self.bf16, False, self.busy) / batch

    def head_step(self, dim: int) -> float:
        return self.steps.head_step(dim, self.busy)

    def graph(self, n: int, dim: int, k: int) -> float:
        return self.steps.graph(n, dim, k, self.busy)

    def startup(self, cfg: TrainConfig) -> float:
        """Building the model and loading its weights (about a second for an ImageNet backbone)."""
        key = f"{torch.__version__}|startup|{cfg.arch}|{bool(cfg.weights)}"
        return self.steps._known(key, self.busy, lambda: _measure_startup(cfg))

    def features_cached(self, cfg: TrainConfig, what: str) -> bool:
        if self.splits is None or self.cache_dir is None:
            return False
        s = self.splits
        if what == "labeled":
            key = labeled_key(cfg, len(s.labeled_y))
        elif what == "test":
            key = ("test",)
        else:
            key = unlabeled_key(unlabeled_subset(s, cfg.n_unlabeled))
        fingerprint = s.unlabeled_fingerprint if what == "unlabeled" else s.fingerprint
        path = feature_path(self.cache_dir, feature_key(cfg, fingerprint, *key))
        return path is not None and path.exists()


def estimate_seconds(cfg: TrainConfig, splits: Splits, cache_dir: Path | None = None, busy: bool = False) -> float:
    """Estimated wall time of a run of cfg on splits, in seconds (data loading excluded). busy: a run
    is training now, so an unknown step time raises EstimateUnavailable instead of being measured."""
    timing = MeasuredTiming(cfg, splits, cache_dir, busy)
    method, n, classes = get_method(cfg.method), len(splits.labeled_y), len(splits.classes)
    if splits.cross_validated:  # a fit per fold, and one on every labeled image (core.runs.crossval)
        folds = cv_fold_count(cfg, n)
        fold = DataSizes(n - n // folds, n // folds, len(splits.unlabeled_x), classes)
        whole = DataSizes(n, n, len(splits.unlabeled_x), classes)
        return (folds + 1) * timing.startup(cfg) + folds * method.estimate(cfg, fold, timing) + method.estimate(
            cfg, whole, timing)  # fmt: skip
    sizes = DataSizes(n, len(splits.test_y), len(splits.unlabeled_x), classes)
    return timing.startup(cfg) + method.estimate(cfg, sizes, timing)


def measure(cfg: TrainConfig, splits: Splits, cache_dir: Path | None) -> float:
    """Measures (in a worker, never in the server) what cfg's estimate needs, and the size of the network it
    would keep; returns the estimate."""
    seconds = estimate_seconds(cfg, splits, cache_dir, busy=False)
    classes = len(splits.classes)
    timings = step_timings(str(cache_dir) if cache_dir else None)
    timings._known(_bytes_key(cfg.arch, classes), False, lambda: float(state_dict_bytes(cfg.arch, classes)))
    return seconds


def _bytes_key(arch: str, classes: int) -> str:
    return f"bytes|{arch}|{classes}"


def kept_network_bytes(arch: str, classes: int, cache_dir: Path | None) -> int | None:
    """The size of the network a run of arch keeps, as a timing job counted it; None before one has."""
    value = step_timings(str(cache_dir) if cache_dir else None).known.get(_bytes_key(arch, classes))
    return None if value is None else int(value)


def known_per_image(cfg: TrainConfig, cache_dir: Path | None) -> float | None:
    """Seconds per image through cfg's network at its resolution, on its device, if measured already (never
    measured now: the server asks this)."""
    try:
        return MeasuredTiming(cfg, None, cache_dir, busy=True).per_image(cfg.arch, cfg.resolution)
    except EstimateUnavailable:
        return None


def final_pass_seconds(cfg: TrainConfig, n_test: int, cache_dir: Path | None = None) -> float | None:
    """The final test pass of a run of cfg (for its share of the progress bar and the ETA): from step
    timings measured at an idle moment, never measured now; None when they are not known yet."""
    if not get_method(cfg.method).tests_images(cfg):
        return 0.0  # a head on cached features
    per_image = known_per_image(cfg, cache_dir)
    return None if per_image is None else n_test * per_image
