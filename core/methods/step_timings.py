"""How long will a run take on this device? Measured, not guessed: a few timed steps, extrapolated
by the method's own `estimate`; features already in the cache cost what reading them back costs."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from core.config import TrainConfig, cv_fold_count
from core.data.splits import Splits
from core.engine.device import resolve_device, use_bf16
from core.methods import probes
from core.methods.base import DataSizes
from core.methods.frozen import feature_key, feature_path, labeled_key
from core.methods.pseudo_labels import unlabeled_key, unlabeled_subset
from core.methods.registry import get_method
from core.models import state_dict_bytes

TIMINGS_FILE = "timings.json"


class EstimateUnavailable(RuntimeError):
    """No timing is known for this model yet, and measuring now would time the run that is training too."""


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
        # the run's own optimiser; "p160": on up to PROBE images; "w": the mean over a timing window
        # (core.methods.probes); "bnf": inference with BatchNorm folded (core.engine.fusion). Older timings are retaken.
        optimizer = optimizer if train else "-"
        tags = f"cl|opt|p{probes.PROBE}|w" + ("" if train else "|bnf")
        key = f"{torch.__version__}|{tags}|{device}|{arch}|{resolution}|{batch}|{int(bf16)}|{int(train)}|{optimizer}"
        return self._known(
            key, busy, lambda: probes.measure_step(arch, resolution, batch, device, bf16, train, optimizer)
        )

    def head_step(self, dim: int, busy: bool) -> float:
        # "loop": timed through the engine's loop; "w": over a timing window. Older timings are retaken.
        return self._known(f"{torch.__version__}|head_loop_w|{dim}", busy, lambda: probes.measure_head_step(dim))

    def centroid_pass(self, dim: int, busy: bool) -> float:
        key = f"{torch.__version__}|centroid_pass_w|{dim}"
        return self._known(key, busy, lambda: probes.measure_centroid_pass(dim))

    def spread(self, n: int, k: int, busy: bool) -> float:
        """Seconds per node and class of one label spreading (its iterations are sparse products that grow with
        both), timed at up to 20,000 nodes as the graph is."""
        big = max(400, min(n, 20_000))
        return self._known(f"{torch.__version__}|spread_w|{big}|{k}", busy, lambda: probes.measure_spread(big, k))

    def load_per_byte(self, busy: bool) -> float:
        folder = self.path.parent if self.path is not None else None
        return self._known(f"{torch.__version__}|load_w", busy, lambda: probes.measure_load(folder))

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
            self.known[ka], self.known[kb], self.known[kc] = probes.measure_graph(sizes, dim, k)
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

    def centroid_pass(self, dim: int) -> float:
        return self.steps.centroid_pass(dim, self.busy)

    def graph(self, n: int, dim: int, k: int) -> float:
        return self.steps.graph(n, dim, k, self.busy)

    def spread(self, n: int, k: int, classes: int) -> float:
        return self.steps.spread(n, k, self.busy) * n * classes

    def load_seconds(self, nbytes: int) -> float:
        return nbytes * self.steps.load_per_byte(self.busy)

    def fold(self, arch: str) -> float:
        """Folding the network's BatchNorm layers before an extraction (core.engine.fusion)."""
        return self.steps._known(f"{torch.__version__}|fold_w|{arch}", self.busy, lambda: probes.measure_fold(arch))

    def startup(self, cfg: TrainConfig) -> float:
        """Building the model and loading its weights (about a second for an ImageNet backbone)."""
        key = f"{torch.__version__}|startup_w|{cfg.arch}|{bool(cfg.weights)}"  # _w: over the timing window
        return self.steps._known(key, self.busy, lambda: probes.measure_startup(cfg))

    def features_cached(self, cfg: TrainConfig, what: str) -> bool:
        path = self.feature_file(cfg, what)
        return path is not None and path.exists()

    def feature_file(self, cfg: TrainConfig, what: str) -> Path | None:
        """Where the features of `what` (labeled, test, unlabeled) for cfg are cached; None without a cache."""
        if self.splits is None or self.cache_dir is None:
            return None
        s = self.splits
        if what == "labeled":
            key = labeled_key(cfg, len(s.labeled_y))
        elif what == "test":
            key = ("test",)
        else:
            key = unlabeled_key(unlabeled_subset(s, cfg.n_unlabeled))
        fingerprint = s.unlabeled_fingerprint if what == "unlabeled" else s.fingerprint
        return feature_path(self.cache_dir, feature_key(cfg, fingerprint, *key))


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
    timings.load_per_byte(False)  # the next run of cfg reads back the features this one caches
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
