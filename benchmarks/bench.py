"""The benchmark: `python -m core bench --dataset DIR --weights FILE --out DIR [--quick]`.

Writes `report.md` and `results.csv` into --out:
1. engine speed on the notebook's own recipe: its loop (benchmarks.notebook_loop) against our engine,
   side by side in one process on one device;
2. throughput: evaluation images/s per model and resolution, feature extraction images/s;
3. accuracy per budget (benchmarks.bench_presets): every preset of every method and the notebook's four
   experiments over 3 seeds, mean and std, seconds cold and cached, and the time estimate against each run;
4. many seeds: five seeds of the scratch recipe trained together (core.runs.multiseed, stacked) against
   the same five trained alone, end to end and training only;
5. jobs and app (benchmarks.bench_jobs): two jobs at once vs one, Stop latency, the Train page's rerun
   time while a run trains, a run from the app with its page open in Chromium vs the CLI.
--quick shrinks every part to a smoke check; --parts picks some of them (default: all).
"""

from __future__ import annotations

import csv
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python benchmarks/...` from the root imports this checkout's core

from benchmarks.bench_jobs import app_measurements, class_measurements, stop_latency, two_jobs_at_once  # noqa: E402
from benchmarks.bench_presets import presets_part  # noqa: E402
from benchmarks.notebook_loop import run_notebook_loop  # noqa: E402
from core.data.load import default_cache_dir, load_splits  # noqa: E402
from core.engine.device import device_name, resolve_device, use_bf16  # noqa: E402
from core.methods import frozen as feat  # noqa: E402
from core.methods.registry import preset  # noqa: E402
from core.models import create_model  # noqa: E402
from core.runs.multiseed import fit_seeds  # noqa: E402
from core.runs.train import fit  # noqa: E402

PARTS = ("engine", "throughput", "accuracy", "seeds", "jobs", "class")
RESOLUTIONS = (32, 64, 96, 128, 160, 224)
TRANSFER_ARCHS = ("resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def engine_vs_notebook(splits, epochs: int, test_limit: int | None, device: str) -> list[dict[str, Any]]:
    log(f"[1/5] notebook loop vs engine, {epochs} epochs")
    nb = run_notebook_loop(splits, epochs=epochs, device=device, test_limit=test_limit)
    small = splits if test_limit is None else _limit_test(splits, test_limit)
    cfg = preset("scratch", "notebook", epochs=epochs, eval_every=0, device=device)
    t = time.perf_counter()
    ours = fit(cfg, small)
    wall = time.perf_counter() - t
    rows = [
        {
            "part": "engine",
            "name": "notebook loop",
            "train_s": nb["train_s"],
            "test_s": nb["test_s"],
            "total_s": nb["train_s"] + nb["test_s"],
            "train_acc": nb["train_acc"],
            "test_acc": nb["test_acc"],
        },
        engine_row("our engine", ours, wall),
    ]
    rows.append(
        {
            "part": "engine",
            "name": "speed-up",
            "total_s": rows[0]["total_s"] / rows[1]["total_s"],
            "train_s": rows[0]["train_s"] / rows[1]["train_s"],
            "test_s": rows[0]["test_s"] / rows[1]["test_s"],
        }
    )
    return rows


def engine_row(name: str, record, wall: float) -> dict[str, Any]:
    """A run of the notebook recipe through our engine, as the engine table shows it."""
    return {
        "part": "engine",
        "name": name,
        "train_s": record.timings["train_s"],
        "test_s": record.timings["eval_s"],
        "total_s": wall,
        "train_acc": record.history[-1]["train_acc"],
        "test_acc": record.metrics.test_acc,
    }


def _limit_test(splits, n):
    from dataclasses import replace

    return replace(splits, test_x=splits.test_x[:n], test_y=splits.test_y[:n])


def throughput(splits, weights: str, n_images: int, device: str) -> list[dict[str, Any]]:
    log("[2/5] throughput")
    dev = resolve_device(device)
    bf16 = use_bf16(dev, "auto")
    images = splits.test_x[:n_images]
    rows = []
    plan = [("resnet18_cifar", 32), ("convnet_cifar", 32)] + [(a, r) for a in TRANSFER_ARCHS for r in RESOLUTIONS]
    for arch, res in plan:
        w = weights if arch == "mobilenet_v2" else ""
        model = create_model(arch, len(splits.classes), w, res, arch in TRANSFER_ARCHS).to(dev).eval()
        feat.extract(model, images[:64], device=dev, bf16=bf16)  # warm-up
        t = time.perf_counter()
        feat.extract(model, images, device=dev, bf16=bf16, batch_size=64 if dev.type == "cpu" else 512)
        rate = len(images) / (time.perf_counter() - t)
        rows.append({"part": "throughput", "name": f"{arch} @ {res}px", "images_per_s": rate})
        log(f"  {arch} @ {res}px: {rate:.0f} images/s")
    return rows


def many_seeds(splits, quick: bool, device: str, n: int = 5, epochs: int | None = None) -> list[dict]:
    """n seeds of the scratch recipe (shortened: the ratio, not the accuracy, is measured) trained
    together, stacked, against the same n trained alone one after another, in this process."""
    epochs = epochs or (2 if quick else 20)
    log(f"[4/5] {n} seeds of scratch recommended ({epochs} epochs): stacked vs alone")
    if quick:  # the test pass is the same work either way; a slice of it keeps the smoke check short
        splits = dataclasses.replace(splits, test_x=splits.test_x[:1000], test_y=splits.test_y[:1000])
    cfg = preset("scratch", "recommended", device=device, epochs=epochs, warmup_epochs=1, eval_every=0)
    seeds = list(range(n))
    t = time.perf_counter()
    alone = [fit(cfg.with_(seed=s), splits) for s in seeds]
    alone_s = time.perf_counter() - t
    t = time.perf_counter()
    stacked = fit_seeds(cfg, seeds, splits, stack=True)
    stacked_s = time.perf_counter() - t
    alone_train = sum(r.timings["train_s"] for r in alone)
    stacked_train = sum(r.timings["train_s"] for r in stacked)  # each seed's share of the shared time
    # Not equal run for run: early training at this learning rate amplifies float rounding (the order of
    # sums in a grouped convolution; the memory layout alone does as much), so compare the seeds' means.
    acc_alone = statistics.mean(r.metrics.test_acc for r in alone)
    acc_stacked = statistics.mean(r.metrics.test_acc for r in stacked)
    log(f"  alone {alone_s:.0f}s, stacked {stacked_s:.0f}s; training {alone_train:.0f}s vs {stacked_train:.0f}s")
    name = f"{n} seeds, {epochs} epochs, {len(splits.test_y):,} test images"
    one = alone_s / n
    return [
        {"part": "seeds", "name": f"{name}: alone, one after another (s)", "value": alone_s},
        {"part": "seeds", "name": f"{name}: together, stacked (s)", "value": stacked_s},
        {"part": "seeds", "name": "speed-up, end to end (alone / stacked)", "value": alone_s / stacked_s},
        {"part": "seeds", "name": "speed-up, training only", "value": alone_train / stacked_train},
        {"part": "seeds", "name": f"stacked {n} seeds / one seed alone, end to end", "value": stacked_s / one},
        {"part": "seeds", "name": f"mean test accuracy of the {n} seeds alone (%)", "value": acc_alone * 100},
        {"part": "seeds", "name": f"mean test accuracy of the {n} seeds stacked (%)", "value": acc_stacked * 100},
    ]


def chosen(args) -> str:
    """The command's --cache-dir, --parts, --presets and --max-run-s, where given (the report names the whole
    command)."""
    given = [("--cache-dir", getattr(args, "cache_dir", None)), ("--parts", getattr(args, "parts", None)),
             ("--presets", getattr(args, "presets", None))]  # fmt: skip
    if getattr(args, "max_run_s", 900.0) != 900.0:
        given.append(("--max-run-s", f"{args.max_run_s:g}"))
    return "".join(f' {flag} "{value}"' if " " in value else f" {flag} {value}" for flag, value in given if value)


def write_report(out: Path, rows: list[dict[str, Any]], device: str, args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("part", "name"), k))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)

    def fmt(v: Any, key: str) -> str:
        if v is None or v == "":
            return ""
        if "acc" in key:
            return f"{v:.1%}"
        if key in ("ratio", "value") and isinstance(v, float):
            return f"{v:.2f}"
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = [
        "# Small Data Lab benchmark",
        "",
        f"- device: {device}",
        f"- torch {torch.__version__}, dataset `{args.dataset}`, weights `{args.weights}`",
        f"- mode: {'quick (smoke check)' if args.quick else 'full'}; command: `python -m core bench "
        f"--dataset {args.dataset} --weights {args.weights} --out {args.out}{' --quick' if args.quick else ''}"
        f"{chosen(args)}`",
        "",
    ]
    sections = {
        "engine": (
            "Engine speed on the notebook's recipe",
            ["name", "train_s", "test_s", "total_s", "train_acc", "test_acc"],
        ),
        "throughput": ("Evaluation throughput (images/s)", ["name", "images_per_s"]),
        "accuracy": (
            "Every preset: test accuracy (mean ± std over seeds) against seconds per run, cold and cached",
            [
                "name",
                "test_acc",
                "test_acc_std",
                "seeds",
                "cold_s",
                "cached_s",
                "supervised_probe_acc",
                "pseudo_label_acc",
                "note",
            ],
        ),  # fmt: skip
        "estimate": (
            "Time estimate against the run (target: ratio within 0.75-1.25)",
            ["name", "estimate_s", "actual_s", "ratio", "in_range", "phases"],
        ),  # fmt: skip
        "seeds": ("Many seeds at once (core.runs.multiseed)", ["name", "value"]),
        "jobs": ("Worker processes", ["name", "value"]),
        "app": ("The app (AppTest and Chromium)", ["name", "value"]),
        "class": ("A class on one server (benchmarks/class_bench.py)", ["name", "value"]),
    }
    for part, (title, cols) in sections.items():
        part_rows = [r for r in rows if r["part"] == part]
        if not part_rows:
            continue
        lines += [f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in part_rows:
            lines.append(
                "| "
                + " | ".join(fmt(r.get(c), c) if r["name"] != "speed-up" or "acc" not in c else "" for c in cols)
                + " |"
            )
        lines.append("")
    (out / "report.md").write_text("\n".join(lines))
    log(f"wrote {out / 'report.md'} and {out / 'results.csv'}")


def main(args) -> int:
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    splits = load_splits(args.dataset, cache_dir=cache, download=False)
    dev = resolve_device("auto")
    device = str(dev)
    quick = args.quick
    parts = set((getattr(args, "parts", None) or ",".join(PARTS)).split(","))
    if parts - set(PARTS):
        raise ValueError(f"--parts {parts - set(PARTS)}: choose from {','.join(PARTS)}")
    rows = []
    if "engine" in parts:
        rows += engine_vs_notebook(splits, 2 if quick else 100, 500 if quick else None, device)
    if "throughput" in parts:
        rows += throughput(splits, args.weights, 128 if quick else 1024, device)
    if "accuracy" in parts:
        only = [p.strip() for p in args.presets.split(",")] if args.presets else None
        rows += presets_part(splits, args.weights, 1 if quick else 3, quick, device, cache, Path(args.out), only,
                             args.max_run_s)  # fmt: skip
    if "seeds" in parts:
        rows += many_seeds(splits, quick, device)
    if "jobs" in parts and not args.skip_jobs:
        rows += two_jobs_at_once(args.dataset, cache, 2 if quick else 10)
        rows += stop_latency(args.dataset, args.weights, cache)
        rows += app_measurements(args.dataset, cache, quick, args.weights)
    if "class" in parts and not args.skip_jobs:
        rows += class_measurements(args.dataset, cache, quick)
    write_report(Path(args.out), rows, device_name(dev), args)
    print(Path(args.out, "report.md").read_text())
    return 0
