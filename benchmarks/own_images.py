"""An uploaded dataset end to end, as the README's "Your images" reports it: a zip made the way a user would
(the offline CIFAR-10's first labeled images of each class as class folders, 200 training images as a flat
`unlabeled/` folder, their hidden class folders left out), read and stored by core.datasets, then transfer and
labelspread (their recommended presets) from the CLI with 3 seeds each, scored by 5-fold cross-validation.

Usage: python benchmarks/own_images.py --dataset ../shared/datasets/cifar10-offline --weights FILE.pth [--out DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.access import SINGLE_USER  # noqa: E402
from core.datasets.library import DatasetLibrary  # noqa: E402
from core.datasets.upload import read_zip  # noqa: E402


def sample_zip(offline: Path, per_class: int = 10, unlabeled: int = 200) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for folder in sorted((offline / "labeled").iterdir()):
            for f in sorted(folder.iterdir())[:per_class]:
                archive.write(f, f"sample/{folder.name}/{f.name}")
        pool = sorted((offline / "unlabeled").glob("*/*"))
        for i, f in enumerate(pool[:: len(pool) // unlabeled][:unlabeled]):
            archive.write(f, f"sample/unlabeled/u{i:04d}{f.suffix}")  # flat: no hidden class folder
    return out.getvalue()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    work = Path(a.out or tempfile.mkdtemp(prefix="own-images-"))
    info = DatasetLibrary(work / "datasets").create(read_zip(sample_zip(Path(a.dataset)), 32), "CIFAR sample",
                                                    SINGLE_USER)  # fmt: skip
    print(f"dataset: {info.n_labeled} labeled ({info.labeled}), {info.unlabeled} unlabeled, no test set")
    rows = []
    for method in ("transfer", "labelspread"):
        scores, seconds = [], []
        for seed in (0, 1, 2):
            out = subprocess.run(
                [sys.executable, "-m", "core", "train", "--dataset", str(info.folder), "--method", method, "--arch",
                 "mobilenet_v2", "--weights", a.weights, "--seed", str(seed), "--runs-dir", str(work / "runs"),
                 "--cache-dir", str(work / "cache"), "--json"], capture_output=True, text=True, cwd=ROOT, check=True,
            )  # fmt: skip
            run = json.loads(out.stdout)
            scores.append(run["test_acc"])
            seconds.append(run["seconds"])
        rows.append((method, statistics.fmean(scores), statistics.stdev(scores), statistics.fmean(seconds)))
    print("| method (recommended) | 5-fold CV accuracy, mean ± std over 3 seeds | seconds per run |")
    print("| --- | --- | --- |")
    for method, mean, std, secs in rows:
        print(f"| {method} | {mean:.1%} ± {std:.1%} | {secs:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
