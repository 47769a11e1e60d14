"""spreadtune on the validation split (core.data.splits.validation_splits: 2,000 held-out unlabeled images, their
hidden labels as the test set), with config overrides, for choosing its settings on a CPU without
touching the test set. It prints each epoch's row and the result.

    python benchmarks/spreadtune_val.py --dataset DIR --weights FILE [epochs=1 warmup_epochs=0 batch_size=128 ...]

Feature caching is shared with labelspread (--cache-dir); a cold start extracts about 80,000 images at 160 px.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python benchmarks/...` from the root imports this checkout's core

from core.data.load import load_splits  # noqa: E402
from core.data.splits import validation_splits  # noqa: E402
from core.methods.registry import preset  # noqa: E402
from core.runs.train import fit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--cache-dir", default="data/cache")
    ap.add_argument("overrides", nargs="*", help="field=value (JSON values: numbers, true/false)")
    args = ap.parse_args()
    overrides = {}
    for item in args.overrides:
        key, value = item.split("=", 1)
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    cache = Path(args.cache_dir)
    splits = validation_splits(load_splits(args.dataset, cache_dir=cache))
    cfg = preset("spreadtune", "gpu", weights=args.weights, **({"eval_subset": 2000, "eval_every": 1} | overrides))
    t = time.perf_counter()
    record = fit(cfg, splits, cache_dir=cache, on_row=lambda row: print(row, flush=True))
    print(f"{record.status}: {record.metrics.test_acc:.2%} on {record.metrics.test_images} validation images, "
          f"start {record.diagnostics.get('start_test_acc')}, pseudo-labels {record.diagnostics.get('final_acc')}, "
          f"{time.perf_counter() - t:.0f}s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
