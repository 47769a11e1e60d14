"""The benchmark's presets part: every preset of every registered method, and the notebook's four experiments,
each over seeds. For each: test accuracy (mean ± std over the seeds), seconds cold and cached, and the Train
page's time estimate against every run.

"Cold" is seed 0 on a cache folder of its own that holds only the decoded images: no features, no step
timings, as on a new install. "Cached" are the next seeds on that same folder, with the features seed 0 left.
The estimate is taken just before each run, on the cache as it is then (what the Train page shows at Start):
step times a new folder lacks are measured then, at an idle moment, as the app's timing job does.

A preset whose estimate is over --max-run-s is not run (a GPU preset on a CPU: spreadtune's epoch takes 16
minutes on 2 cores); the report says so instead of leaving it out.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python benchmarks/...` from the root imports this checkout's core

from benchmarks.caches import decoded_only  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.methods.registry import list_methods, list_presets, preset, validate  # noqa: E402
from core.methods.step_timings import estimate_seconds  # noqa: E402
from core.runs.train import fit  # noqa: E402
from core.views.notebook import experiments  # noqa: E402

ESTIMATE_RANGE = (0.75, 1.25)  # issue 27: every estimate within 25% of the run
QUICK = {"epochs": 2, "warmup_epochs": 0, "rounds": 1, "n_unlabeled": 500, "eval_every": 0}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def recipes(weights: str, device: str) -> dict[str, TrainConfig]:
    """Name -> config: each method's presets ("scratch / quick"), ImageNet weights read from `weights` (the
    offline file), then those of the notebook's four experiments that are not a preset already."""
    out: dict[str, TrainConfig] = {}
    for method in list_methods():
        for name in list_presets(method):
            cfg = preset(method, name, device=device)
            out[f"{method} / {name}"] = cfg.with_(weights=weights) if cfg.weights else cfg
    known = {cfg.config_hash() for cfg in out.values()}
    for key, cfg in experiments("mobilenet_v2", weights).items():
        cfg = cfg.with_(device=device)
        if cfg.config_hash() not in known:
            out[f"notebook: {key}"] = cfg
    return out


def phases(record) -> str:
    """Where a run's time went, as the run timed it ("features_s 30, train_s 12, ..."): what an estimate that
    misses is checked against."""
    return ", ".join(f"{k} {v:.1f}" for k, v in record.timings.items() if isinstance(v, int | float))


def run_recipe(
    name: str, cfg: TrainConfig, splits, seeds: int, cache: Path, cold_estimate: float
) -> tuple[list[dict], list[dict]]:
    """(accuracy rows, estimate rows) of one recipe over `seeds` seeds on `cache`; cold_estimate: seed 0's."""
    results, estimates = [], []
    for seed in range(seeds):
        run_cfg = cfg.with_(seed=seed)
        # Before each run, on the cache as it is then (the seed changes no step of it).
        estimates.append(cold_estimate if seed == 0 else estimate_seconds(run_cfg, splits, cache))
        t = time.perf_counter()
        record = fit(run_cfg, splits, cache_dir=cache)
        wall = time.perf_counter() - t
        results.append((record, wall))
        log(
            f"  {name} seed {seed}: {record.metrics.test_acc:.1%} in {wall:.0f}s ({record.status}), estimated "
            f"{estimates[-1]:.0f}s (ratio {estimates[-1] / wall:.2f})"
        )
    accs = [r.metrics.test_acc for r, _ in results]
    walls = [w for _, w in results]
    row: dict[str, Any] = {
        "part": "accuracy",
        "name": name,
        "test_acc": statistics.mean(accs),
        "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "seeds": len(accs),
        "cold_s": walls[0],
        "cached_s": statistics.mean(walls[1:]) if len(walls) > 1 else None,
    }
    diagnostics = [r.diagnostics for r, _ in results if r.diagnostics]
    if diagnostics and diagnostics[0].get("supervised_test_acc") is not None:
        row["supervised_probe_acc"] = statistics.mean(d["supervised_test_acc"] for d in diagnostics)
        row["pseudo_label_acc"] = statistics.mean(d["final_acc"] or 0 for d in diagnostics)
    low, high = ESTIMATE_RANGE
    checks = [
        {"part": "estimate", "name": f"{name} seed {i} ({'cold' if i == 0 else 'cached'})", "estimate_s": est,
         "actual_s": wall, "ratio": est / wall, "in_range": "yes" if low <= est / wall <= high else "NO",
         "phases": phases(record)}
        for i, (est, (record, wall)) in enumerate(zip(estimates, results, strict=True))
    ]  # fmt: skip
    return [row], checks


def presets_part(
    splits, weights: str, seeds: int, quick: bool, device: str, cache: Path, out: Path,
    only: list[str] | None = None, max_run_s: float = 900.0,
) -> list[dict]:  # fmt: skip
    """Every recipe of `recipes` (or those named in `only`), each on a cold cache folder under out/caches."""
    plan = recipes(weights, device)
    if only:
        unknown = set(only) - set(plan)
        if unknown:
            raise ValueError(f"--presets {', '.join(sorted(unknown))}: choose from {', '.join(plan)}")
        plan = {k: v for k, v in plan.items() if k in only}
    log(f"[3/5] {len(plan)} presets and notebook experiments, {seeds} seed(s) each")
    rows: list[dict] = []
    root = out / "caches" / time.strftime("%Y%m%d-%H%M%S")
    for name, cfg in plan.items():
        if quick:
            cfg = validate(TrainConfig.from_dict(cfg.to_dict() | QUICK))
        cache_dir = decoded_only(cache, root / name.replace(" / ", "-").replace(": ", "-").replace(" ", "_"))
        t = time.perf_counter()
        expected = estimate_seconds(cfg, splits, cache_dir)  # measures the step times a new folder lacks
        log(f"  {name}: estimated {expected:.0f}s (step times measured in {time.perf_counter() - t:.0f}s)")
        if expected > max_run_s:
            log(f"  {name}: not run, estimated {expected:.0f}s per run here (over --max-run-s {max_run_s:.0f})")
            rows.append({"part": "accuracy", "name": name, "seeds": 0,
                         "note": f"not run: estimated {expected:.0f} s per run on this device"})  # fmt: skip
            continue
        accuracy, checks = run_recipe(name, cfg, splits, seeds, cache_dir, expected)
        rows += accuracy + checks
    return rows
