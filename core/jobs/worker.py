"""A worker: a process that takes jobs from the queue (core.jobs.queue), runs each with `execute` and
saves it to the run store beside the queue. `python -m core worker [--once] [--job ID]`.

The app starts a worker process for a job (core.jobs.supervisor); the worker then goes on with the next queued
jobs and waits a while for more (`next_job`), and takes the queued seeds of a stackable recipe along
(core.runs.multiseed). A worker can also run on its own, for example on a GPU machine that shares the runs
folder. The server never trains.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from core import settings
from core.access import PermissionDenied
from core.config import TrainConfig
from core.data.load import load_splits
from core.data.splits import DataError
from core.jobs.job import stopped_message
from core.jobs.queue import JobInfo, JobQueue
from core.jobs.reaping import write_pending_records
from core.methods.step_timings import measure
from core.plugins import load_plugins
from core.runs.evaluate import evaluate_saved
from core.runs.multiseed import MAX_SEEDS, fit_seeds, stacks_here
from core.runs.prepare import prepare_lesson
from core.runs.record import RunRecord, new_run_id
from core.runs.store import RunStore, StoreError
from core.runs.train import execute, failed_record, failure_advice
from core.views.computed import ViewRequest
from core.views.computed import compute as compute_view

STOP_POLL_S = 0.2  # how often a running job asks the database whether Stop was pressed
NOTE_EVERY_S = 0.5  # progress notes (feature extraction, the test pass) at most this often
HEARTBEAT_S = 2.0
LINGER_POLL_S = 0.25  # how often an idle worker looks for a next job


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def stop_poller(queue: JobQueue, job_id: int):
    """should_stop for one job: asks the database at most every STOP_POLL_S, and remembers a yes."""
    last = {"check": 0.0, "stop": False}

    def should_stop() -> bool:
        now = time.monotonic()
        if not last["stop"] and now - last["check"] >= STOP_POLL_S:
            last["check"], last["stop"] = now, queue.stop_requested(job_id)
        return last["stop"]

    return should_stop


def run_job(queue: JobQueue, job: JobInfo, store: RunStore, cache_dir: Path | None) -> str:
    """Runs one claimed job to its end and records it in the queue; returns its final state. A training
    job whose recipe stacks here (core.runs.multiseed) takes the queued jobs of its other seeds along."""
    done = threading.Event()
    beating = [job.job_id]

    def heartbeat() -> None:  # lets other machines tell a live worker from a dead one
        while not done.wait(HEARTBEAT_S):
            for job_id in list(beating):
                queue.beat(job_id)

    threading.Thread(target=heartbeat, daemon=True).start()
    should_stop = stop_poller(queue, job.job_id)
    last_note = {"at": 0.0}

    def note(fraction: float, text: str) -> None:
        now = time.monotonic()
        if now - last_note["at"] >= NOTE_EVERY_S or fraction >= 1.0:
            last_note["at"] = now
            queue.set_note(job.job_id, fraction, text)

    try:
        # A view or a timing is of the dataset as the pages load it (all its labeled images).
        n_labeled = job.cfg.n_labeled if job.kind in ("train", "evaluate") else None
        splits = load_splits(job.dataset, n_labeled=n_labeled, cache_dir=cache_dir, download=False)
        if job.kind == "evaluate":
            return evaluate_job(queue, job, store, splits, note, should_stop)
        if job.kind in ("view", "timing", "prepare"):
            return view_or_timing_job(queue, job, store, splits, cache_dir, note, should_stop)
        if stacks_here(job.cfg) and (siblings := queue.claim_siblings(job, MAX_SEEDS - 1)):
            beating += [s.job_id for s in siblings]
            return run_seeds(queue, [job, *siblings], store, splits, cache_dir, note)
        record = execute(
            job.cfg, splits, store, on_row=lambda row: queue.add_row(job.job_id, row), should_stop=should_stop,
            cache_dir=cache_dir, progress=note, owner=job.owner,
        )  # fmt: skip
        finish_run(queue, job, record, store)
        return record.status
    except (DataError, OSError, ValueError, RuntimeError) as err:  # before the run: nothing to save
        queue.finish(job.job_id, "failed", None, failure_advice(err))
        return "failed"
    finally:
        done.set()


def run_seeds(queue: JobQueue, jobs: list[JobInfo], store: RunStore, splits, cache_dir, note) -> str:
    """Jobs of one recipe and different seeds, trained together; each saved as its own run."""
    started = time.time()
    run_ids = [new_run_id(j.cfg) for j in jobs]
    stops = [stop_poller(queue, j.job_id) for j in jobs]
    rows: list[list[dict]] = [[] for _ in jobs]

    def on_row(i: int, row: dict) -> None:
        rows[i].append(row)
        queue.add_row(jobs[i].job_id, row)

    try:
        records = fit_seeds(
            jobs[0].cfg, [j.cfg.seed for j in jobs], splits, on_row=on_row, should_stop=lambda i: stops[i](),
            cache_dir=cache_dir, progress=note, run_ids=run_ids, stack=True,
            keep_weights=lambda i, state, kind: store.save_weights(run_ids[i], state, kind),
        )  # fmt: skip
    except (ValueError, RuntimeError, MemoryError) as err:  # OOM, ...: every seed saved as failed
        records = [failed_record(j.cfg, err, splits=splits, run_id=run_ids[i], history=rows[i], started=started)
                   for i, j in enumerate(jobs)]  # fmt: skip
    for job, record in zip(jobs, records, strict=True):
        record.owner = job.owner
        store.save(record)
        finish_run(queue, job, record, store)
    return records[0].status


def finish_run(queue: JobQueue, job: JobInfo, record: RunRecord, store: RunStore) -> None:
    """Ends a training job with its saved run; a run a teacher stopped says so, in the queue and in the run."""
    if record.status == "stopped" and (stopped := queue.get(job.job_id)) is not None:
        message = stopped_message(stopped, record.message)
        if message != record.message:
            record.message = message
            store.save(record)
    queue.finish(job.job_id, record.status, record.run_id, record.message)


def evaluate_job(queue: JobQueue, job: JobInfo, store: RunStore, splits, note, should_stop) -> str:
    """The full test pass of a saved run; the run itself is only rewritten when the pass completes."""
    try:
        record = evaluate_saved(store, job.run_id, splits, progress=note, should_stop=should_stop, by=job.actor)
    except InterruptedError:
        queue.finish(job.job_id, "stopped", job.run_id, "evaluation stopped: the run keeps its partial accuracy")
        return "stopped"
    except (StoreError, PermissionDenied) as err:  # PermissionDenied: queued before the run changed hands
        queue.finish(job.job_id, "failed", job.run_id, str(err))
        return "failed"
    message = f"evaluated on {record.metrics.test_images:,} test images: {record.metrics.test_acc:.1%}"
    queue.finish(job.job_id, "finished", job.run_id, message)
    return "finished"


def view_or_timing_job(queue: JobQueue, job: JobInfo, store: RunStore, splits, cache_dir, note, should_stop) -> str:
    """What a page shows that takes seconds (core.views.computed), or the step times of a run's estimate
    (core.methods.step_timings.measure): computed here so that the server never does."""
    cache_dir = Path(cache_dir) if cache_dir else settings.current().cache_dir
    try:
        if job.kind == "timing":
            note(0.1, "measuring step times")
            seconds = measure(job.cfg, splits, cache_dir)
            message = f"step times measured: a run of this config takes about {seconds:.0f} s here"
        elif job.kind == "prepare":
            message = prepare_job(job, splits, store, cache_dir, note, should_stop)
        else:
            request = ViewRequest.from_dict(job.request)
            compute_view(request, splits, cache_dir, lambda run_id: store.load_weights(run_id).state, note,
                         should_stop)  # fmt: skip
            message = f"{request.what} computed"
    except InterruptedError:
        queue.finish(job.job_id, "stopped", None, f"{job.kind} stopped")
        return "stopped"
    except StoreError as err:
        queue.finish(job.job_id, "failed", None, str(err))
        return "failed"
    queue.finish(job.job_id, "finished", None, message)
    return "finished"


def prepare_job(job: JobInfo, splits, store: RunStore, cache_dir: Path, note, should_stop) -> str:
    """A lesson's caches warmed (core.runs.prepare): the step times first, then what they let the plan see."""
    recipes = {name: TrainConfig.from_dict(cfg) for name, cfg in job.request["recipes"].items()}
    seeds, run = tuple(job.request.get("seeds", ())), bool(job.request.get("run"))
    done = prepare_lesson(recipes, splits, cache_dir, store, seeds, run, by=job.actor, progress=note,
                          should_stop=should_stop)  # fmt: skip
    return f"the lesson is ready: {len(done)} step(s) done"


def next_job(queue: JobQueue, below: int, linger_s: float) -> JobInfo | None:
    """The next queued job, claimed while fewer than `below` run; waits up to linger_s for one."""
    deadline = time.monotonic() + linger_s
    while (job := queue.claim(below=below)) is None and time.monotonic() < deadline:
        time.sleep(LINGER_POLL_S)
    return job


def work(
    queue_path: Path,
    *,
    once: bool = False,
    job_id: int | None = None,
    threads: int | None = None,
    cache_dir: Path | None = None,
    poll_s: float = 1.0,
    then_below: int | None = None,
    linger_s: float = 0.0,
) -> int:
    """Takes jobs until there are none (once=True) or forever; returns how many it ran.
    then_below=N: after job_id, go on with the next queued jobs while fewer than N run (a started
    worker saves the next job the ~4.5 s of starting torch and torchvision), and wait linger_s for
    one after each (the supervisor then leaves the next Start to this worker, core.jobs.supervisor)."""
    load_plugins()
    set_threads(threads)
    queue = JobQueue(queue_path)
    store = RunStore(Path(queue_path).parent)
    ran = 0
    while True:
        job = queue.claim(job_id)
        if job is None:
            if once or job_id is not None:
                return ran
            time.sleep(poll_s)
            continue
        write_pending_records(queue, store)  # the claim reaped dead workers' jobs: save their runs
        run_job(queue, job, store, cache_dir)
        ran += 1
        if job_id is not None and then_below:
            while (job := next_job(queue, then_below, linger_s)) is not None:
                run_job(queue, job, store, cache_dir)
                ran += 1
            return ran
        if once or job_id is not None:
            return ran
