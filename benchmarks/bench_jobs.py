"""The job side of the benchmark (benchmarks.bench): runs in worker processes, as the app runs them.

- two jobs at once with SMALLDATA_MAX_JOBS=2 against one alone (each worker gets half the cores);
- Stop during the feature extraction of the whole unlabeled pool: seconds until the run is saved;
- the app's measurements (benchmarks/app_bench.py, which needs Streamlit and a browser).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/...` imports this checkout's core

from benchmarks.caches import decoded_only  # noqa: E402
from core.access import SINGLE_USER as ME  # noqa: E402
from core.jobs.supervisor import Supervisor  # noqa: E402
from core.methods.registry import preset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _wall(registry: Supervisor, job_ids: list[int]) -> float:
    registry.wait(job_ids=job_ids)
    jobs = [registry.get(i) for i in job_ids]
    bad = [j for j in jobs if j.state != "finished"]
    if bad:
        raise RuntimeError(f"job {bad[0].job_id} {bad[0].state}: {bad[0].message}")
    return max(j.ended for j in jobs) - min(j.created for j in jobs)


def two_jobs_at_once(dataset: str, cache: Path, epochs: int) -> list[dict[str, Any]]:
    """Wall time from queueing to the last save: one job alone, then two at once with max 2 running."""
    log(f"[jobs] one job alone vs two at once, scratch/notebook {epochs} epochs")
    cfg = preset("scratch", "notebook", epochs=epochs, eval_every=0)
    alone_reg = Supervisor(Path(tempfile.mkdtemp(prefix="bench-one-")), dataset, max_running=1, cache_dir=cache)
    alone = _wall(alone_reg, [alone_reg.submit(cfg, by=ME).job_id])
    alone_reg.close()
    pair_reg = Supervisor(Path(tempfile.mkdtemp(prefix="bench-two-")), dataset, max_running=2, cache_dir=cache)
    pair = _wall(pair_reg, [pair_reg.submit(cfg.with_(seed=s), by=ME).job_id for s in (0, 1)])
    pair_reg.close()
    log(f"  one alone {alone:.1f}s, two at once {pair:.1f}s ({pair / alone:.2f}x)")
    return [
        {"part": "jobs", "name": "one job alone (s)", "value": alone},
        {"part": "jobs", "name": "two jobs at once, SMALLDATA_MAX_JOBS=2 (s)", "value": pair},
        {"part": "jobs", "name": "two at once / one alone (target <= 2.3)", "value": pair / alone},
    ]


def stop_latency(dataset: str, weights: str, cache: Path) -> list[dict[str, Any]]:
    """Stop while the unlabeled pool's features are extracted (an empty feature cache): seconds from the
    stop request to the saved run."""
    log("[jobs] Stop during feature extraction of the unlabeled pool")
    cold = decoded_only(cache)
    reg = Supervisor(Path(tempfile.mkdtemp(prefix="bench-stop-")), dataset, cache_dir=cold)
    job = reg.submit(preset("labelspread", "recommended", weights=weights), by=ME)
    while "unlabeled" not in reg.get(job.job_id).note:
        if reg.get(job.job_id).done:
            raise RuntimeError(f"the job ended before the unlabeled features: {reg.get(job.job_id).message}")
        time.sleep(0.2)
    time.sleep(2.0)  # well inside the extraction
    t = time.time()
    reg.stop(job.job_id, ME)
    reg.wait(job_ids=[job.job_id])
    done = reg.get(job.job_id)
    latency = done.ended - t
    saved = reg.store.load(done.run_id).status if done.run_id else "nothing saved"
    reg.close()
    log(f"  stopped during '{done.message[:60]}' in {latency:.2f}s, saved as {saved}")
    return [{"part": "jobs", "name": f"Stop during feature extraction -> saved as {saved} (s, target <= 2)",
             "value": latency}]  # fmt: skip


def _script_rows(part: str, script: str, args: list[str], names: dict[str, str]) -> list[dict[str, Any]]:
    """Runs benchmarks/SCRIPT (it prints one JSON object last) and names its figures as report rows."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                         cwd=ROOT)  # fmt: skip
    sys.stderr.write(out.stderr[-3000:])
    if out.returncode != 0:
        return [{"part": part, "name": f"{part} measurements failed (see the log)", "value": None}]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return [{"part": part, "name": names[k], "value": v} for k, v in r.items() if k in names]


APP_RECIPES = ("scratch_notebook", "transfer_notebook", "labelspread_recommended_cold")  # app_bench.RECIPES


def app_measurements(dataset: str, cache: Path, quick: bool, weights: str) -> list[dict[str, Any]]:
    log("[app] a cold Why map's server CPU; Train page rerun idle vs training; a run from the CLI and from the app")
    args = ["--dataset", dataset, "--cache-dir", str(cache), "--weights-dir", str(Path(weights).parent)]
    names = {
        "rerun_idle_s": "Train page rerun, idle (s)",
        "rerun_busy_s": "Train page rerun while a run trains (s)",
        "rerun_ratio": "rerun while training / idle (target <= 1.5)",
        **{
            key: text
            for recipe in APP_RECIPES
            for key, text in (
                (f"{recipe}_cli_s", f"{recipe}: from the CLI (s, median)"),
                (f"{recipe}_repeats", f"{recipe}: interleaved rounds (CLI, queue, page open)"),
                (f"{recipe}_queue_vs_cli", f"{recipe}: through the queue, no page open / CLI (target <= 1.1)"),
                (f"{recipe}_page_vs_cli", f"{recipe}: Train page open in Chromium / CLI (target <= 1.1)"),
            )
        },
        "why_wall_s": "cold Why maps, from Compute to both drawn in Chromium (s)",
        "why_server_cpu_s": "the Streamlit server's own CPU while those maps are computed (s, target < 2)",
    }
    return _script_rows("app", "app_bench.py", args + (["--quick"] if quick else []), names)


def class_measurements(dataset: str, cache: Path, quick: bool) -> list[dict[str, Any]]:
    """Thirty students (five with --quick) each start a small run; page reruns while the queue drains."""
    students = 5 if quick else 30
    log(f"[class] {students} students of one class each start a small run; their Train pages rerun while it drains")
    names = {
        "students": "students, one small run each (convnet_cifar, 1 epoch, full test pass)",
        "rerun_p50_s": "Train page rerun while the queue drains, p50 (s)",
        "rerun_p95_s": "Train page rerun while the queue drains, p95 (s, target < 1)",
        "reruns": "page reruns measured",
        "last_wait_s": "the last student's wait for their run to start (s)",
        "drain_s": "first Start to the last run saved (s)",
        "runs_with_their_owner": "runs saved with their owner",
    }
    args = ["--dataset", dataset, "--cache-dir", str(cache), "--students", str(students)]
    return _script_rows("class", "class_bench.py", args, names)
