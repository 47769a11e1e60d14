"""The scratch preset with and without its whitened stem (config field whiten_stem), on the validation split.

The stem's 24 filters are [W, -W], where W whitens the 2x2 patches of the labeled images (the
eigenvectors of their 12x12 covariance over sqrt(eigenvalue + 5e-4)), frozen, as in airbench
(core/models/convnet_cifar.py). Measured on the validation split (core.data.splits.validation_splits), never the
test set. Writes one line per run and the mean and spread per arm. The preset comment's 29.8 +- 0.25% (on)
and 28.2 +- 0.2% (off) were measured without mirror test-time augmentation, which the preset took after:
--flip-test off reproduces them.

    python benchmarks/whiten_stem.py --dataset ../shared/datasets/cifar10-offline --seeds 0,1,2 --arms on,off
"""

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python benchmarks/...` from the root imports this checkout's core

from core.data.load import load_splits  # noqa: E402
from core.data.splits import validation_splits  # noqa: E402
from core.methods.registry import preset  # noqa: E402
from core.runs.train import fit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arms", default="on,off", help="on: whitened stem (the preset), off: a learned stem")
    parser.add_argument("--flip-test", choices=("preset", "on", "off"), default="preset")
    args = parser.parse_args()
    flip_test = None if args.flip_test == "preset" else args.flip_test == "on"
    splits = validation_splits(load_splits(args.dataset))
    for arm in args.arms.split(","):
        accs = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            cfg = preset(
                "scratch", "recommended", seed=seed, eval_every=0, whiten_stem=arm == "on", flip_test=flip_test
            )
            record = fit(cfg, splits)
            accs.append(record.metrics.test_acc)
            seconds = record.timings["total_s"]
            print(
                f"whiten_stem={arm} seed {seed}: {accs[-1]:.2%} on the validation split in {seconds:.0f} s", flush=True
            )
        if len(accs) > 1:
            print(f"whiten_stem={arm}: mean {statistics.mean(accs):.2%} +- {statistics.stdev(accs):.2%}", flush=True)


if __name__ == "__main__":
    main()
