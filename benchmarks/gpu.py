"""The GPU checks of issue 12, in one process, within a time budget (device time is scarce):

1. spreadtune on the validation split (core.data.splits.validation_splits) first, with an empty feature
   cache: a variant (--set) is chosen there, never on the test set;
2. spreadtune's `gpu` preset (label spreading, then the whole network fine-tuned on the spread labels)
   on the first 100 labels and the whole test set, seed after seed while the budget allows;
3. the notebook's scratch recipe, 100 epochs: its own loop (benchmarks.notebook_loop) against our engine;
4. five seeds of the scratch recipe trained together (core.runs.multiseed) against the same five alone.

    PYTHONPATH=. python benchmarks/gpu.py --dataset DIR --weights FILE --out DIR [--budget 500] [--quick]

Every part appends to OUT/results.csv and rewrites OUT/report.md as soon as it ends, so that a run cut
short still reports what it measured. --quick shrinks everything to a smoke check (on any device).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python benchmarks/...` from the root imports this checkout's core

from benchmarks.bench import engine_row, engine_vs_notebook, many_seeds  # noqa: E402
from core.data.load import load_splits  # noqa: E402
from core.data.splits import validation_splits  # noqa: E402
from core.engine.device import device_name, environment, resolve_device, use_bf16  # noqa: E402
from core.methods.registry import preset  # noqa: E402
from core.runs.train import fit  # noqa: E402

START = time.perf_counter()
PARTS = ("validation", "spreadtune", "notebook", "eager", "seeds")
RESERVE = 90  # seconds kept for the notebook recipe and the many-seeds check (about a minute on an H200)


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - START:6.1f}s] {msg}", file=sys.stderr, flush=True)


class Report:
    def __init__(self, out: Path, header: list[str]) -> None:
        self.out, self.header, self.rows = out, header, []
        out.mkdir(parents=True, exist_ok=True)

    def add(self, rows: list[dict]) -> None:
        self.rows += rows
        keys = sorted({k for r in self.rows for k in r}, key=lambda k: (k not in ("part", "name"), k))
        with open(self.out / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        lines = [*self.header, ""]
        for part in dict.fromkeys(r["part"] for r in self.rows):
            rows = [r for r in self.rows if r["part"] == part]
            cols = [k for k in keys if any(k in r for r in rows) and k != "part"]
            lines += [f"## {part}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
            lines.append("")
        (self.out / "report.md").write_text("\n".join(lines))


def _fmt(v: object) -> str:
    if v is None:
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def spreadtune_runs(
    splits, args, cache: Path, seeds: list[int], part: str, deadline: float, report: Report
) -> list[dict]:
    """Seed after seed of spreadtune's gpu preset, while the last run's time still fits before deadline.
    Each seed's row is reported as soon as it ends (a run cut short keeps the seeds it finished); the
    part returns the mean."""
    rows, walls = [], []
    for seed in seeds:
        left = deadline - time.perf_counter()
        if walls and max(walls) * 1.1 > left:
            log(f"{part}: seed {seed} skipped, {left:.0f}s left and a run took {max(walls):.0f}s")
            rows.append({"part": part, "name": f"seed {seed}", "status": "skipped: out of device time"})
            report.add(rows[-1:])
            break
        cfg = preset("spreadtune", "gpu", **args.overrides | dict(weights=args.weights, seed=seed, device="auto"))
        if args.quick:
            cfg = cfg.with_(n_unlabeled=2000, per_class=50, epochs=2, eval_every=1, resolution=64)
        t = time.perf_counter()
        record = fit(cfg, splits, cache_dir=cache, on_row=lambda r, s=seed: log(f"  {part} seed {s}: {_row(r)}"))
        walls.append(time.perf_counter() - t)
        checks = [(r["index"], r["test_acc"]) for r in record.history if r.get("test_acc") is not None]
        rows.append({
            "part": part, "name": f"seed {seed}", "status": record.status, "test_acc": record.metrics.test_acc,
            "wall_s": walls[-1], "teacher_s": record.timings.get("teacher_s"),
            "student_s": record.timings.get("student_s"), "eval_s": record.timings.get("eval_s"),
            "pseudo_labels": record.diagnostics.get("final_count"), "pseudo_acc": record.diagnostics.get("final_acc"),
            "start_check": record.diagnostics.get("start_test_acc"),
            "checks": " ".join(f"{i}:{a:.3f}" for i, a in checks), "test_images": record.metrics.test_images,
        })  # fmt: skip
        rows[-1]["rounds"] = " ".join(f"{r['round']}:{r['pseudo_acc']:.3f}" for r in record.diagnostics["rounds"]
                                      if r.get("pseudo_acc") is not None)  # fmt: skip
        report.add(rows[-1:])
        log(f"{part} seed {seed}: {record.metrics.test_acc:.2%} in {walls[-1]:.0f}s ({record.status})")
    accs = [r["test_acc"] for r in rows if r.get("status") == "finished"]
    if not accs:
        return []
    return [{"part": part, "name": f"mean over {len(accs)} seed(s)", "test_acc": statistics.mean(accs),
             "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else None, "wall_s": max(walls)}]  # fmt: skip


def eager_engine(splits, epochs: int, device: str) -> list[dict]:
    """The notebook recipe through our engine with every step eager, as on a CPU: what the graphs buy."""
    import core.engine.loop

    graphable = core.engine.loop.graphable
    core.engine.loop.graphable = lambda *args: False
    try:
        cfg = preset("scratch", "notebook", epochs=epochs, eval_every=0, device=device)
        t = time.perf_counter()
        record = fit(cfg, splits)
        wall = time.perf_counter() - t
    finally:
        core.engine.loop.graphable = graphable
    return [engine_row("our engine, eager steps", record, wall)]


def stacked_with_checks(splits, device: str) -> list[dict]:
    """Two seeds stacked with a test check every epoch (the stacked test pass, bf16 under vmap)."""
    from core.runs.multiseed import fit_seeds

    cfg = preset("scratch", "recommended", device=device, epochs=2, warmup_epochs=1, eval_every=1)
    records = fit_seeds(cfg, [0, 1], splits, stack=True)
    return [{"part": "seeds", "name": f"stacked, checked every epoch: seed {r.config.seed}", "status": r.status,
             "test_acc": r.metrics.test_acc, "checks": len([h for h in r.history if h.get("test_acc") is not None])}
            for r in records]  # fmt: skip


def _row(r: dict) -> str:
    acc = f", check {r['test_acc']:.3f}" if r.get("test_acc") is not None else ""
    return f"epoch {r['index']} loss {r['train_loss']:.3f} ({r['seconds']:.0f}s){acc}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=500, help="seconds for the whole script")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
    ap.add_argument("--set", default="{}", help="spreadtune overrides, as JSON: '{\"spread_rounds\": 2}'")
    args = ap.parse_args()
    args.overrides = json.loads(args.set)
    deadline = START + args.budget
    dev = resolve_device("auto")
    cache = Path(tempfile.mkdtemp(prefix="gpu-bench-cache-"))  # empty: the first spreadtune run is cold
    report = Report(Path(args.out), [
        "# GPU checks (benchmarks/gpu.py)", "",
        f"- device: {device_name(dev)}; {environment(dev, use_bf16(dev, 'auto'))}",
        f"- command: `PYTHONPATH=. python benchmarks/gpu.py --dataset {args.dataset} --weights {args.weights} "
        f"--out {args.out} --budget {args.budget:g}{' --quick' if args.quick else ''} --parts {args.parts} "
        f"--set '{args.set}'`",
    ])  # fmt: skip
    t = time.perf_counter()
    splits = load_splits(args.dataset, cache_dir=cache, download=False)
    log(f"data loaded in {time.perf_counter() - t:.0f}s on {device_name(dev)}")
    test_limit = 500 if args.quick else None
    epochs = 2 if args.quick else 100
    # The accuracy runs first, as many seeds as fit while leaving RESERVE seconds for the two speed checks.
    chosen = set(args.parts.split(","))
    runs_deadline = deadline - (RESERVE if chosen & {"notebook", "eager", "seeds"} else 0)
    parts = [
        ("validation", "spreadtune, validation split",
         lambda: spreadtune_runs(validation_splits(splits), args, cache, [0], "spreadtune validation", runs_deadline,
                                 report)),
        ("spreadtune", "spreadtune, first 100 labels, test set",
         lambda: spreadtune_runs(splits, args, cache, [0, 1, 2], "spreadtune test", runs_deadline, report)),
        ("notebook", "notebook recipe", lambda: engine_vs_notebook(splits, epochs, test_limit, str(dev))),
        ("eager", "notebook recipe, our engine without CUDA graphs", lambda: eager_engine(splits, epochs, str(dev))),
        # 120 of the recipe's 720 epochs: 20, as on a CPU, is a second's work on a GPU, all fixed costs.
        ("seeds", "many seeds", lambda: many_seeds(splits, args.quick, str(dev), epochs=2 if args.quick else 120)
         + stacked_with_checks(splits, str(dev))),
    ]  # fmt: skip
    parts = [(name, part) for key, name, part in parts if key in chosen]
    for name, part in parts:
        log(f"--- {name}")
        try:
            t = time.perf_counter()
            rows = part()
            log(f"--- {name}: {time.perf_counter() - t:.0f}s")
        except Exception as err:  # a broken part must not cost the parts after it
            traceback.print_exc()
            rows = [{"part": name, "name": "error", "status": f"{type(err).__name__}: {err}"}]
        report.add(rows)
    print((Path(args.out) / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
