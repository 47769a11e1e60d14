"""Command line: `python -m core train|runs|bench ...`. Errors print one line and exit 2, no traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from core import settings
from core.access import SINGLE_USER, Actor, PermissionDenied, check_name
from core.classroom import prepare as lesson_prep
from core.config import CLI_ALIASES, FIELD_SPECS, FIELD_TYPES, ConfigError, TrainConfig
from core.data.load import dataset_from_env, default_cache_dir, load_splits
from core.data.splits import DataError
from core.jobs.queue import QueueError
from core.methods.registry import default_preset, get_method, list_methods, list_presets, preset
from core.models import ModelError
from core.runs.record import RunRecord
from core.runs.store import RunStore, StoreError, default_runs_dir
from core.settings import SettingsError
from core.views.tables import runs_frame, score_text, to_markdown


def _add_config_options(p: argparse.ArgumentParser) -> None:
    methods_help = "the method (core.methods.registry); 'semi' with --semi ALGO is the older spelling"
    p.add_argument("--method", choices=[*list_methods(), "semi"], default="scratch", help=methods_help)
    p.add_argument("--semi", default=None, help=argparse.SUPPRESS)
    presets_help = f"one of {', '.join(list_presets())} (default: the method's recommended one, as on the Train page)"
    p.add_argument("--preset", default=None, help=presets_help)
    defaults = TrainConfig()
    for name, spec in FIELD_SPECS.items():
        if name == "method":
            continue
        flag = "--" + CLI_ALIASES.get(name, name).replace("_", "-")
        kind = {"int": int, "float": float, "str": str, "bool": bool}[FIELD_TYPES[name]]
        accepted = f" [{spec.low:g}, {spec.high:g}]" if spec.low is not None else ""
        accepted += f" {{{', '.join(spec.choices)}}}" if spec.choices else ""
        text = f"{spec.label}{accepted}. {spec.help} (default: the preset's; base {getattr(defaults, name)!r})"
        if kind is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            p.add_argument(flag, dest=name, type=kind, default=None, metavar=kind.__name__.upper(), help=text)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None, help="'cifar10' or a folder path (default $SMALLDATA_DATASET or cifar10)")
    p.add_argument("--runs-dir", default=None, help="where runs are saved (default $SMALLDATA_RUNS_DIR or ./runs)")
    p.add_argument("--cache-dir", default=None, help="decoded-data and feature caches (default ./data/cache)")
    p.add_argument("--owner", default=None, help="in class mode, who this is for: a member's name (default: local, "
                   "the server's own user, who may do everything)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Small Data Lab command line")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="run one config here, in this process, and save it")
    _add_config_options(train)
    _add_common(train)
    train.add_argument("--json", action="store_true", help="print one JSON summary at the end")
    submit = sub.add_parser("submit", help="queue one config for a worker process; prints the job id")
    _add_config_options(submit)
    _add_common(submit)
    submit.add_argument("--wait", action="store_true", help="wait for the run and print its JSON summary")
    jobs = sub.add_parser("jobs", help="the job queue: id, state, progress, run id")
    _add_common(jobs)
    jobs.add_argument("--json", action="store_true")
    stop = sub.add_parser("stop", help="stop a queued or running job")
    _add_common(stop)
    stop.add_argument("job", type=int)
    delete = sub.add_parser("delete", help="delete a saved run and its weights")
    _add_common(delete)
    delete.add_argument("run_id")
    evaluate = sub.add_parser("evaluate", help="queue the full test pass of a saved run that stopped early")
    _add_common(evaluate)
    evaluate.add_argument("run_id")
    evaluate.add_argument("--wait", action="store_true", help="wait for it and print the new test accuracy")
    worker = sub.add_parser("worker", help="run queued jobs (until none is left with --once)")
    _add_common(worker)
    worker.add_argument("--once", action="store_true", help="run at most one job, then exit")
    worker.add_argument("--job", type=int, default=None, help="run this job only")
    worker.add_argument("--then-below", type=int, default=None,
                        help="after --job, run the next queued jobs while fewer than N run")  # fmt: skip
    worker.add_argument("--linger", type=float, default=0.0,
                        help="with --then-below: wait this many seconds for a next job before exiting")  # fmt: skip
    worker.add_argument("--queue", default=None, help="the queue database (default RUNS_DIR/queue.sqlite)")
    worker.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    worker.add_argument("--nice", type=int, default=0, help="lower this worker's CPU priority by N (0-19)")
    runs = sub.add_parser("runs", help="list saved runs")
    _add_common(runs)
    runs.add_argument("--json", action="store_true")
    shown = sub.add_parser("settings", help="the SMALLDATA_* settings in effect")
    shown.add_argument("--json", action="store_true")
    bench = sub.add_parser("bench", help="benchmark report (benchmarks/bench.py; run from the repository root)")
    bench.add_argument("--dataset", required=True)
    bench.add_argument("--weights", required=True)
    bench.add_argument("--out", required=True)
    bench.add_argument("--quick", action="store_true")
    bench.add_argument("--skip-jobs", action="store_true", help="leave out the worker, Stop and app measurements")
    bench.add_argument("--cache-dir", default=None)
    bench.add_argument("--parts", default=None, help="engine,throughput,accuracy,seeds,jobs,class (default all)")
    bench.add_argument("--presets", default=None, help='some recipes: "scratch / quick,notebook: augment"')
    bench.add_argument("--max-run-s", type=float, default=900.0, help="accuracy part: skip a recipe estimated longer")
    lesson_prep.add_parser(sub)
    return parser


def summary(record: RunRecord) -> dict[str, Any]:
    """What `train --json` and `runs --json` print for one run."""
    m = record.metrics
    out = {
        "run_id": record.run_id,
        "owner": record.owner,
        "method": record.method,
        "config": record.config.to_dict(),
        "train_acc": m.train_acc,
        "test_acc": m.test_acc,
        "test_images": m.test_images or record.dataset.get("test"),
        "dataset": record.dataset.get("name", ""),
        "cv_accuracies": m.cv_accuracies,  # non-empty: test_acc is their mean (no test set)
        "unit": record.unit,
        record.unit + "s": len(record.history),
        "seconds": round(record.timings.get("total_s", 0.0), 2),
        "status": record.status,
        "message": record.message,
        "device": record.env.get("device_name"),
    }
    if record.diagnostics:
        out["pseudo_labels"] = record.diagnostics.get("final_count")
        out["pseudo_label_acc"] = record.diagnostics.get("final_acc")
    return out


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    method = args.method
    if method == "semi":  # the spelling before the method registry
        method = args.semi or "selftrain"
    overrides = {name: getattr(args, name) for name in FIELD_SPECS if name != "method"}
    # Without --preset, the method's default preset, as on the Train page: the same experiment either way.
    name = args.preset or default_preset(method)
    return preset(method, name, **overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from core.runs.train import execute

    cfg = config_from_args(args)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()

    def progress(fraction: float, message: str) -> None:
        print(f"\r{message}   ", end="", file=sys.stderr, flush=True)

    splits = load_splits(args.dataset, n_labeled=cfg.n_labeled, cache_dir=cache, progress=progress)
    print(f"\rdata: {splits.summary()['labeled']} labeled, {len(splits.unlabeled_x)} unlabeled, "
          f"{len(splits.test_y)} test from {splits.source}", file=sys.stderr)  # fmt: skip

    total = get_method(cfg.method).total_units(cfg)

    def on_row(row: dict[str, Any]) -> None:
        test = f" test {row['test_acc']:.1%}" if row.get("test_acc") is not None else ""
        print(f"{row['unit']} {row['index']:4d}/{total}  loss {row['train_loss']:.4f}  train {row['train_acc']:.1%}"
              f"{test}  lr {row['lr']:.2e}  {row['seconds']:.1f}s", file=sys.stderr, flush=True)  # fmt: skip

    store = RunStore(Path(args.runs_dir) if args.runs_dir else default_runs_dir())
    record = execute(cfg, splits, store, on_row=on_row, cache_dir=cache, progress=progress, owner=actor(args).name)
    out = summary(record)
    if args.json:
        print(json.dumps(out))
    else:
        scored = "" if record.status == "failed" else f"  train {out['train_acc'] or 0:.1%}  {score_text(record)}"
        print(f"\n{record.status}: {record.run_id}{scored}  {out['seconds']}s")
    if record.status in ("diverged", "failed"):
        print(f"error: {record.message}", file=sys.stderr)
        return 1
    return 0


def _runs_dir(args: argparse.Namespace) -> Path:
    return Path(args.runs_dir) if args.runs_dir else default_runs_dir()


def actor(args: argparse.Namespace) -> Actor:
    """Who the command is for: --owner NAME (a member of the class, a teacher if the roster or
    SMALLDATA_TEACHERS says so), or the server's own user, who may do everything."""
    if args.owner is None:
        return SINGLE_USER
    from core.classroom.roster import Roster

    try:
        name = check_name(args.owner) if args.owner != "local" else "local"
    except ValueError as err:
        raise PermissionDenied(f"--owner: {err}") from None
    return Roster(_runs_dir(args)).named(name, settings.current())


def _registry(args: argparse.Namespace, start: bool):
    from core.jobs.supervisor import Supervisor

    max_jobs = settings.current().max_jobs
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    return Supervisor(_runs_dir(args), args.dataset, max_running=max_jobs, cache_dir=cache, start=start)


def cmd_submit(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    registry = _registry(args, start=args.wait)
    job = registry.submit(cfg, by=actor(args))  # starts a worker process for it when a slot is free
    print(job.job_id if not args.wait else f"job {job.job_id}", file=sys.stdout if not args.wait else sys.stderr)
    if not args.wait:
        return 0
    registry.wait(job_ids=[job.job_id])
    done = registry.get(job.job_id)
    if done.run_id is None:
        print(f"error: job {job.job_id} {done.state}: {done.message}", file=sys.stderr)
        return 1
    record = registry.store.load(done.run_id)
    print(json.dumps(summary(record)))
    return 0 if record.status in ("finished", "stopped") else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    from core.jobs.progress import job_fraction
    from core.jobs.queue import JobQueue, default_queue_path

    queue = JobQueue(default_queue_path(_runs_dir(args)))
    queue.reap()  # a worker killed with no server running: its job shows interrupted, not running forever
    jobs, places = queue.jobs(), queue.positions()
    rows = [{"job": j.job_id, "owner": j.owner, "kind": j.kind, "state": j.state, "place": places.get(j.job_id),
             "method": j.cfg.method, "progress": round(job_fraction(j), 3), "started": j.started, "note": j.note,
             "run_id": j.run_id, "message": j.message} for j in jobs]  # fmt: skip
    if args.json:
        print(json.dumps(rows))
    elif rows:
        import pandas as pd

        print(to_markdown(pd.DataFrame(rows)))
    else:
        print("no jobs")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from core.jobs.queue import JobQueue, default_queue_path

    state = JobQueue(default_queue_path(_runs_dir(args))).request_stop(args.job, by=actor(args))
    if state is None:
        print(f"error: no job {args.job}", file=sys.stderr)
        return 2
    print(f"job {args.job}: {state}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    store, by = RunStore(_runs_dir(args)), actor(args)
    store.check(args.run_id, by, "delete")  # "no run ...": delete itself takes a missing run as deleted
    store.delete(args.run_id, by=by)
    print(f"deleted {args.run_id}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    registry = _registry(args, start=args.wait)
    job = registry.evaluate(args.run_id, by=actor(args))
    print(job.job_id if not args.wait else f"job {job.job_id}", file=sys.stdout if not args.wait else sys.stderr)
    if not args.wait:
        return 0
    registry.wait(job_ids=[job.job_id])
    done = registry.get(job.job_id)
    print(f"job {job.job_id} {done.state}: {done.message}")
    return 0 if done.state == "finished" else 1


def cmd_worker(args: argparse.Namespace) -> int:
    from core.jobs.queue import default_queue_path
    from core.jobs.worker import work

    if args.nice:
        os.nice(max(0, min(19, args.nice)))
    queue = Path(args.queue) if args.queue else default_queue_path(_runs_dir(args))
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    ran = work(queue, once=args.once, job_id=args.job, threads=args.threads, cache_dir=cache,
               then_below=args.then_below, linger_s=args.linger)  # fmt: skip
    print(f"worker: ran {ran} job(s)", file=sys.stderr)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    store = RunStore(Path(args.runs_dir) if args.runs_dir else default_runs_dir())
    runs = store.runs()
    for w in store.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps([summary(r) for r in runs]))
    elif runs:
        frame = runs_frame(runs).drop(columns=["config_hash"])
        for col in ("train_acc", "test_acc"):
            frame[col] = frame[col].map(lambda v: "" if v is None or v != v else f"{v:.1%}")
        print(to_markdown(frame))
    else:
        print(f"no runs in {store.root}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    rows = settings.current().rows()
    if args.json:
        print(json.dumps({r["variable"]: r["value"] for r in rows}))
        return 0
    import pandas as pd

    print(to_markdown(pd.DataFrame(rows)))
    return 0


def main(argv: list[str] | None = None) -> int:
    from core.plugins import load_plugins

    try:
        load_plugins()  # before the parser: plug-ins may register methods that --method offers
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "dataset", None) is None and args.command != "bench":
            args.dataset = dataset_from_env()
        if args.command == "settings":
            return cmd_settings(args)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "runs":
            return cmd_runs(args)
        commands = {"submit": cmd_submit, "jobs": cmd_jobs, "stop": cmd_stop, "worker": cmd_worker,
                    "delete": cmd_delete, "evaluate": cmd_evaluate, "prepare": lesson_prep.main}  # fmt: skip
        if args.command in commands:
            return commands[args.command](args)
        from benchmarks.bench import main as bench_main

        return bench_main(args)
    except (ConfigError, DataError, ModelError, StoreError, QueueError, SettingsError, PermissionDenied) as err:
        if getattr(args, "json", False):  # a machine reads stdout: the error as JSON there too
            print(json.dumps({"error": str(err)}))
        else:
            print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
