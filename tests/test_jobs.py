import threading

import torch

from core.config import TrainConfig
from core.jobs import JobRegistry, execute
from core.store import RunStore
from core.train import failure_advice
from tests.conftest import TINY

QUICK = dict(arch=TINY, epochs=1, batch_size=10, lr=1e-3, eval_every=0, device="cpu", n_labeled=30)


def test_eight_concurrent_submissions_queue_and_all_finish(splits, tmp_path):
    store = RunStore(tmp_path / "runs")
    gate = threading.Event()  # the first job waits here, so that the other seven are really queued
    reg = JobRegistry(lambda cfg: (gate.wait(30), splits)[1], store, max_running=1)
    jobs = []
    threads = [
        threading.Thread(target=lambda s=s: jobs.append(reg.submit(TrainConfig(**QUICK, seed=s)))) for s in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reg.running()) == 1
    waiting = [reg.queue_position(j.job_id) for j in jobs if j.state == "queued"]
    assert sorted(waiting) == list(range(1, 8))
    gate.set()
    assert reg.wait(timeout=240)
    assert sorted(j.state for j in jobs) == ["finished"] * 8
    assert len(store.runs()) == 8 and len({r.config.seed for r in store.runs()}) == 8


def test_stopping_queued_and_running_jobs(splits, tmp_path):
    store = RunStore(tmp_path / "runs")
    reg = JobRegistry(lambda cfg: splits, store, max_running=1)
    first = reg.submit(TrainConfig(**QUICK | {"epochs": 5000}))
    second = reg.submit(TrainConfig(**QUICK))
    assert reg.queue_position(second.job_id) == 1
    reg.stop(second.job_id)
    assert second.state == "stopped" and reg.queue_position(second.job_id) is None
    reg.stop(first.job_id)
    assert reg.wait(timeout=120)
    assert first.state == "stopped"
    saved = store.runs()
    assert len(saved) == 1 and saved[0].status == "stopped"  # the partial run is kept, marked stopped


def test_failures_are_saved_with_advice_and_the_registry_goes_on(splits, tmp_path, monkeypatch):
    import core.jobs

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    store = RunStore(tmp_path / "runs")
    monkeypatch.setattr(core.jobs, "fit", out_of_memory)
    record = execute(TrainConfig(**QUICK), splits, store)
    assert record.status == "failed" and "lower the batch size" in record.message
    assert store.load(record.run_id).status == "failed" and "OutOfMemoryError" in record.traceback

    def broken_loader(cfg):
        raise OSError("disk on fire")

    reg = JobRegistry(broken_loader, store)
    job = reg.submit(TrainConfig(**QUICK))
    assert reg.wait(timeout=30) and job.state == "failed" and "disk on fire" in job.message
    monkeypatch.undo()
    reg2 = JobRegistry(lambda cfg: splits, store)
    later = reg2.submit(TrainConfig(**QUICK))
    assert reg2.wait(timeout=60) and later.state == "finished"


def test_failure_advice():
    assert "batch size" in failure_advice(MemoryError())
    assert "ValueError" in failure_advice(ValueError("bad"))
