"""Jobs as Ray tasks (`SMALLDATA_EXECUTOR=ray`, optional: `pip install -e ".[ray]"`).

Each job becomes one task that runs the ordinary worker (core.jobs.worker) on whichever machine of the
cluster has the CPUs (and GPU) it asks for. `RAY_ADDRESS` joins an existing cluster; without it a
local Ray instance starts. Every machine must see the same runs folder (the queue and the run store
live there) and the dataset at the same path: a shared filesystem, as a class's GPU server has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import settings
from core.jobs.queue import JobInfo

ROOT = Path(__file__).resolve().parents[2]


def _run(queue_path: str, job_id: int, threads: int, cache_dir: str | None) -> int:
    from core.jobs.worker import work

    return work(Path(queue_path), job_id=job_id, threads=threads, cache_dir=Path(cache_dir) if cache_dir else None)


def init() -> None:
    import ray

    if not ray.is_initialized():
        env = {"PYTHONPATH": str(ROOT), "SMALLDATA_PLUGINS": ",".join(settings.current().plugins)}
        ray.init(
            address=settings.current().ray_address or None, include_dashboard=False, log_to_driver=False,
            runtime_env={"env_vars": env},
        )  # fmt: skip


def submit(job: JobInfo, queue_path: Path, threads: int, cache_dir: Path | None) -> Any:
    import ray

    init()
    gpus = 1 if job.cfg.device.startswith("cuda") else 0
    task = ray.remote(_run).options(num_cpus=threads, num_gpus=gpus, max_retries=0)
    return task.remote(str(queue_path), job.job_id, threads, str(cache_dir) if cache_dir else None)
