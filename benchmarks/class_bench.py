"""A class on one server, the `class` part of `python -m core bench`: thirty students (AppTest sessions of one
class, signed in with the class code) each press Start on the Train page for a small run; while the worker
drains the queue, their Train pages rerun in turn. Prints one JSON object: the p50/p95 of a page rerun, how
long the last student waited for their run to start, and whether every run was saved with its owner.

Usage: python benchmarks/class_bench.py --dataset DIR --cache-dir DIR [--students 30] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def student(name: str, epochs: int):
    """A signed-in session on the Train page that has pressed Start for a small convnet run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.text_input(key="class_code").input("bench-class")
    at.text_input(key="display_name").input(name)
    at.button[0].click().run()
    at.switch_page("pages/train.py")
    at.run()
    at.selectbox(key="preset_scratch").select("notebook").run()
    at.selectbox(key="arch_scratch_notebook").select("convnet_cifar").run()
    at.number_input(key="epochs_scratch_notebook").set_value(epochs)
    at.number_input(key="eval_every_scratch_notebook").set_value(0).run()
    at.button(key="start").click().run()
    assert not at.exception, at.exception
    return at


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True)
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--epochs", type=int, default=1)
    a = p.parse_args()
    runs = Path(tempfile.mkdtemp(prefix="bench-class-"))
    os.environ |= {"SMALLDATA_DATASET": a.dataset, "SMALLDATA_RUNS_DIR": str(runs), "SMALLDATA_CACHE_DIR": a.cache_dir,
                   "SMALLDATA_CLASS_CODE": "bench-class"}  # fmt: skip
    from core.runs.store import RunStore
    from ui.common import registry

    t0 = time.perf_counter()
    sessions = [student(f"Student {i:02d}", a.epochs) for i in range(a.students)]
    log(f"  {a.students} students signed in and pressed Start in {time.perf_counter() - t0:.1f}s")
    reruns: list[float] = []
    i = 0
    deadline = time.time() + 3600
    while registry().queue.count("queued", "running", "stopping") and time.time() < deadline:
        at = sessions[i % len(sessions)]
        t = time.perf_counter()
        at.run()
        reruns.append(time.perf_counter() - t)
        assert not at.exception, at.exception
        i += 1
        time.sleep(0.5)  # a page's live fragment reruns about every second; thirty of them take turns here
    jobs = [j for j in registry().queue.jobs(limit=1000) if j.kind == "train"]
    waits = [j.started - j.created for j in jobs if j.started]
    saved = RunStore(runs).runs()
    result = {
        "students": a.students,
        "rerun_p50_s": statistics.median(reruns),
        "rerun_p95_s": percentile(reruns, 0.95),
        "reruns": len(reruns),
        "last_wait_s": max(waits),
        "drain_s": max(j.ended for j in jobs) - min(j.created for j in jobs),
        "runs_saved": len(saved),
        "runs_with_their_owner": sum(1 for j in jobs if j.run_id and RunStore(runs).load(j.run_id).owner == j.owner),
        "owners": len({r.owner for r in saved}),
    }
    log(
        f"  rerun p50 {result['rerun_p50_s']:.3f}s p95 {result['rerun_p95_s']:.3f}s over {len(reruns)} reruns; "
        f"last student waited {result['last_wait_s']:.0f}s; {len(saved)} runs of {result['owners']} owners"
    )
    registry().close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
