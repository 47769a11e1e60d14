"""From Start to a claimed job, with the worker launcher (core.jobs.launcher) and without:
`PYTHONPATH=. python benchmarks/launch_bench.py`. Tiny jobs on a synthetic folder dataset; every job gets a
new worker (no lingering), so what is timed is a worker's start. The first job of each mode is a warm-up."""

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python benchmarks/...` from the root imports this checkout's core

from core.access import SINGLE_USER as ME  # noqa: E402

os.environ["SMALLDATA_PLUGINS"] = "tests.plugins"  # the tiny model
os.environ["SMALLDATA_WORKER_LINGER"] = "0"
os.environ["SMALLDATA_LAUNCHER_DIR"] = tempfile.mkdtemp()  # a launcher of its own, started below

from core.config import TrainConfig  # noqa: E402
from core.jobs import launcher  # noqa: E402  (after the settings above)
from core.jobs.supervisor import Supervisor  # noqa: E402
from tests.conftest import build_dataset  # noqa: E402

QUICK = dict(arch="tiny_cnn", epochs=1, batch_size=10, lr=1e-3, eval_every=0, device="cpu", n_labeled=30)


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    data = build_dataset(tmp / "data")
    for mode in ("off", "on"):
        os.environ["SMALLDATA_LAUNCHER"] = mode
        reg = Supervisor(tmp / f"runs-{mode}", str(data), max_running=1, cache_dir=tmp / "cache")
        while mode == "on" and not launcher.ready():
            time.sleep(0.1)
        claimed, saved = [], []
        for seed in range(4):
            t = time.time()
            job = reg.submit(TrainConfig(**QUICK, seed=seed), by=ME)
            reg.wait(timeout=120)
            if seed:
                claimed.append(round(reg.get(job.job_id).started - t, 2))
                saved.append(round(time.time() - t, 2))
        print(f"launcher {mode}: submit -> claimed {claimed} s, submit -> saved {saved} s", flush=True)
        reg.close(kill=True)
    launcher.stop()


if __name__ == "__main__":
    main()
