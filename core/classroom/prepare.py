"""`python -m core prepare`: a lesson's caches warmed from the command line (core.runs.prepare does the work), so
that a class demo starts at once. It says what is left and how long it will take before it starts."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.classroom.lesson import lesson_recipes
from core.classroom.roster import Roster
from core.data.load import default_cache_dir, load_splits
from core.runs.prepare import plan, prepare_lesson, total_seconds
from core.runs.store import RunStore, default_runs_dir
from core.views.featuremap import pretrained_backbone
from core.views.notebook import SEEDS


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", help="warm every cache a lesson needs (images, step times, features), optionally "
                       "pre-run its seeds; says how long first")  # fmt: skip
    p.add_argument("--dataset", default=None)
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--arch", default=None, help="the pretrained network (default: the weights folder's)")
    p.add_argument("--weights", default=None, help="its .pth state_dict (default: the weights folder's)")
    p.add_argument("--run", action="store_true", help=f"also run the lesson's seeds {list(SEEDS)} not saved yet")
    p.add_argument("--dry-run", action="store_true", help="only say what is left and how long it takes")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    runs = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    started = time.perf_counter()
    splits = load_splits(
        args.dataset, cache_dir=cache, progress=lambda f, text: print(f"\r{text}   ", end="", file=sys.stderr)
    )  # fmt: skip  (1. the decoded images, cached on the way)
    _say(f"\rdataset: {len(splits.labeled_y)} labeled, {len(splits.unlabeled_x)} unlabeled, {len(splits.test_y)} test "
         f"({time.perf_counter() - started:.1f} s)")  # fmt: skip
    local = pretrained_backbone()
    arch, weights = args.arch or local.arch, args.weights or local.weights
    recipes = lesson_recipes(Roster(runs), arch, weights, min(100, len(splits.labeled_y)))
    store = RunStore(runs)
    steps = plan(recipes, splits, cache, store, SEEDS, args.run)
    total = total_seconds(steps)
    _say(f"left to do: {len(steps)} step(s), " + (f"about {total / 60:.1f} min" if total is not None else
         "time known once the step times are measured (the first steps)"))  # fmt: skip
    for step in steps:
        _say(f"  - {step.label}" + (f" (~{step.seconds:.0f} s)" if step.seconds is not None else ""))
    if args.dry_run or not steps:
        _say("nothing to do: the lesson is ready" if not steps else "dry run: nothing done")
        return 0
    done = prepare_lesson(
        recipes,
        splits,
        cache,
        store,
        SEEDS,
        args.run,
        progress=lambda f, text: print(f"\r[{f:4.0%}] {text[:100]:100}", end="", file=sys.stderr),
    )
    _say("")
    for line in done:
        _say(f"  {line}")
    _say(f"the lesson is ready ({time.perf_counter() - started:.0f} s)")
    return 0
