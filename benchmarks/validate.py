"""A preset, with changes, on a validation split (core.data.splits.validation_splits: held-out unlabeled images and
their hidden labels as the test set), over seeds: how the recipes' choices are made without the test set.

    python benchmarks/validate.py --dataset DIR --weights FILE --method labelspread --preset recommended \
        --n-val 5000 --seeds 0,1 [--draw 54321] [knn=20 rounds=1 ...]

It prints each seed's accuracy and the mean ± std. Features are cached in --cache-dir under the split's own
fingerprint, so a second call with other head or graph settings skips the extraction. transfer reads no unlabeled
image: there the largest split (--n-val 49800) is the steadiest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python benchmarks/...` from the root imports this checkout's core

from core.data.load import load_splits  # noqa: E402
from core.data.splits import VALIDATION_DRAW, validation_splits  # noqa: E402
from core.methods.registry import preset  # noqa: E402
from core.runs.train import fit  # noqa: E402


def overrides_of(items: list[str]) -> dict:
    """field=value pairs; values are JSON where they parse (numbers, true/false), else strings."""
    out = {}
    for item in items:
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--weights", required=True, help="the ImageNet weights file (for presets with weights)")
    ap.add_argument("--method", required=True)
    ap.add_argument("--preset", default="recommended")
    ap.add_argument("--n-val", type=int, default=2000)
    ap.add_argument("--draw", type=int, default=VALIDATION_DRAW, help="the seed of the split's random choice")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--cache-dir", default="data/cache")
    ap.add_argument("overrides", nargs="*", help="field=value")
    args = ap.parse_args()
    cache = Path(args.cache_dir)
    splits = validation_splits(load_splits(args.dataset, cache_dir=cache), args.n_val, args.draw)
    cfg = preset(args.method, args.preset, **overrides_of(args.overrides))
    cfg = cfg.with_(weights=args.weights) if cfg.weights else cfg
    accs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        t = time.perf_counter()
        record = fit(cfg.with_(seed=seed), splits, cache_dir=cache)
        accs.append(record.metrics.test_acc)
        print(f"seed {seed}: {record.metrics.test_acc:.2%} ({record.status}, {time.perf_counter() - t:.0f} s)",
              flush=True)  # fmt: skip
    spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"{args.method} / {args.preset} {' '.join(args.overrides)} on {args.n_val} validation images (draw "
          f"{args.draw}): {statistics.fmean(accs):.2%} ± {spread:.2%}")  # fmt: skip


if __name__ == "__main__":
    main()
