"""Getting a lesson ready before the class arrives: every cache its recipes need, warmed, so that the demo starts
at once. In order, each step skipped when its cache is there already:

1. the dataset's decoded images (the caller loads the splits: core.data caches them on the way);
2. the step times each recipe's estimate reads (core.methods.step_timings.measure);
3. the frozen backbone's features that frozen-feature recipes read (test set, unlabeled pool, labeled images,
   each seed's augmented views), each once, through the same cache and keys as the methods (core.methods.frozen);
4. optionally, the runs themselves (the notebook's seeds), saved as any run.

`plan` says what is left and about how long it takes (from the step timings, once step 2 has measured them);
`prepare` does it, reporting progress and honouring Stop between and inside steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.access import Actor
from core.config import TrainConfig, is_on
from core.data.splits import Splits
from core.engine.device import resolve_device, use_bf16
from core.methods.frozen import AUGMENTED_VIEWS, augmented_steps, feature_cache, labeled_and_test_features
from core.methods.pseudo_labels import unlabeled_key, unlabeled_subset
from core.methods.registry import get_method
from core.methods.step_timings import EstimateUnavailable, MeasuredTiming, estimate_seconds, measure
from core.runs.store import RunStore
from core.runs.train import execute, seeded_model

ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class Step:
    kind: str  # timings | features | run
    name: str  # the recipe's name in the lesson
    cfg: TrainConfig
    seconds: float | None  # about how long, None before the step times are known

    @property
    def label(self) -> str:
        what = {"timings": "step times of", "features": "frozen features of", "run": "run"}[self.kind]
        return f"{what} {self.name}" + (f" (seed {self.cfg.seed})" if self.kind != "timings" else "")


def _frozen(cfg: TrainConfig) -> bool:
    return not get_method(cfg.method).tests_images(cfg)  # a head on cached features


def _features_left(cfg: TrainConfig, splits: Splits, cache_dir: Path, planned: set[Path]) -> list[str]:
    """The image sets whose features for cfg are neither cached nor computed by a step planned before (seeds
    of one recipe share the test set's, the pool's and the plain labeled images' features); adds theirs to
    `planned`."""
    timing = MeasuredTiming(cfg, splits, cache_dir, busy=True)
    sets = ["labeled", "test"] + (["unlabeled"] if get_method(cfg.method).needs_unlabeled else [])
    files = {s: timing.feature_file(cfg, s) for s in sets}
    left = [s for s in sets if not files[s].exists() and files[s] not in planned]
    planned.update(files[s] for s in left)
    return left


def _feature_seconds(cfg: TrainConfig, splits: Splits, cache_dir: Path, left: list[str]) -> float | None:
    views = AUGMENTED_VIEWS if augmented_steps(cfg) else 1
    sizes = {"labeled": len(splits.labeled_y) * views, "test": len(splits.test_y),
             "unlabeled": len(unlabeled_subset(splits, cfg.n_unlabeled))}  # fmt: skip
    try:
        per = MeasuredTiming(cfg, splits, cache_dir, busy=True).per_image(cfg.arch, cfg.resolution)
    except EstimateUnavailable:
        return None
    return per * sum(sizes[s] for s in left) * (2 if is_on("flip_features", cfg) else 1)


def plan(
    recipes: dict[str, TrainConfig], splits: Splits, cache_dir: Path, store: RunStore | None = None,
    seeds: tuple[int, ...] = (), run: bool = False,
) -> list[Step]:  # fmt: skip
    """What a lesson of these recipes still needs on this dataset, in the order `prepare` does it. seeds: the
    seeds the class will run (their labeled views are cached per seed); run: also the runs of those seeds that
    are not saved yet."""
    steps, planned = [], set()
    for name, cfg in recipes.items():
        try:
            estimate_seconds(cfg, splits, cache_dir, busy=True)
        except EstimateUnavailable:
            steps.append(Step("timings", name, cfg, 10.0))
    for name, cfg in recipes.items():
        for seed in seeds or (cfg.seed,):
            seeded = cfg.with_(seed=seed)
            if _frozen(seeded) and (left := _features_left(seeded, splits, cache_dir, planned)):
                steps.append(Step("features", name, seeded, _feature_seconds(seeded, splits, cache_dir, left)))
    if run and store is not None:
        for name, cfg in recipes.items():
            for seed in seeds:
                if store.find(cfg.with_(seed=seed), splits.fingerprint) is None:
                    try:
                        seconds = estimate_seconds(cfg.with_(seed=seed), splits, cache_dir, busy=True)
                    except EstimateUnavailable:
                        seconds = None
                    steps.append(Step("run", name, cfg.with_(seed=seed), seconds))
    return steps


def total_seconds(steps: list[Step]) -> float | None:
    """About how long the plan takes; None while a step's time is unknown (before the step times are measured)."""
    known = [s.seconds for s in steps]
    return None if any(t is None for t in known) else float(sum(known))


def warm_features(cfg: TrainConfig, splits: Splits, cache_dir: Path, progress: ProgressFn | None = None,
                  should_stop: Callable[[], bool] | None = None) -> None:  # fmt: skip
    """The features a frozen-feature run of cfg reads, computed into its cache under the method's own keys."""
    device = resolve_device(cfg.device)
    model = seeded_model(cfg, splits, device)
    features = feature_cache(cfg, splits, model, device, use_bf16(device, cfg.precision), cache_dir, progress,
                             should_stop)  # fmt: skip
    labeled_and_test_features(cfg, splits, features)
    if get_method(cfg.method).needs_unlabeled:
        subset = unlabeled_subset(splits, cfg.n_unlabeled)
        features(splits.unlabeled_x[subset], "unlabeled images", *unlabeled_key(subset))


def prepare(
    steps: list[Step], splits: Splits, cache_dir: Path, store: RunStore | None = None, *, by: Actor | None = None,
    progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
) -> list[str]:  # fmt: skip
    """Does each step; returns one line per step done. Raises InterruptedError when Stop is asked."""
    done = []
    for i, step in enumerate(steps):
        if should_stop and should_stop():
            raise InterruptedError(f"stopped after {i} of {len(steps)} steps")

        def note(fraction: float, text: str, i: int = i, step: Step = step) -> None:
            if progress:
                progress((i + min(1.0, fraction)) / len(steps), f"{i + 1}/{len(steps)} {step.label}: {text}")

        note(0.0, "starting")
        if step.kind == "timings":
            seconds = measure(step.cfg, splits, cache_dir)
            done.append(f"{step.label}: a run takes about {seconds:.0f} s here")
        elif step.kind == "features":
            warm_features(step.cfg, splits, cache_dir, note, should_stop)
            done.append(f"{step.label}: cached")
        elif store is not None:
            record = execute(step.cfg, splits, store, should_stop=should_stop, cache_dir=cache_dir, progress=note,
                             owner=by.name if by else "local")  # fmt: skip
            done.append(f"{step.label}: {record.status}, test accuracy {record.metrics.test_acc or 0:.1%}")
        note(1.0, "done")
    return done


def prepare_lesson(
    recipes: dict[str, TrainConfig], splits: Splits, cache_dir: Path, store: RunStore | None, seeds: tuple[int, ...],
    run: bool, *, by: Actor | None = None, progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[str]:  # fmt: skip
    """`plan` then `prepare`, and once more when the first pass measured step times: only then can the plan see
    which features and runs are left and how long they take."""
    steps = plan(recipes, splits, cache_dir, store, seeds, run)
    done = prepare(steps, splits, cache_dir, store, by=by, progress=progress, should_stop=should_stop)
    if any(s.kind == "timings" for s in steps):
        steps = plan(recipes, splits, cache_dir, store, seeds, run)
        done += prepare(steps, splits, cache_dir, store, by=by, progress=progress, should_stop=should_stop)
    return done
