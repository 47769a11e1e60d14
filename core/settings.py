"""The server's settings: every `SMALLDATA_*` environment variable, read here and nowhere else, into one
frozen dataclass, validated once with a message that names the variable and what it accepts.

`current()` reads the environment at each call (it takes microseconds), so a test or a worker that sets
a variable sees it at once, and no module reads a setting at import time. `RUN_SETTINGS` are the ones
that change how a run trains: a run records them (core.engine.device.environment).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A SMALLDATA_* variable has a value it cannot take; the message names it and what it accepts."""


def _positive_int(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise SettingsError(f"{name}={text!r} is not a whole number of 1 or more; set it to 1, 2, ... or unset it")
    return value


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise SettingsError(f"{name}={text!r} is not a number of seconds (0 or more); set it to, say, 60, or unset it")
    return value


def _one_of(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, text: str) -> str:
        if text not in choices:
            raise SettingsError(f"{name}={text!r} is unknown; choose one of {', '.join(choices)} (or unset it)")
        return text

    return parse


def _text(name: str, text: str) -> str:
    return text


def _path(name: str, text: str) -> Path:
    return Path(text)


def _names(name: str, text: str) -> tuple[str, ...]:
    return tuple(filter(None, (p.strip() for p in text.split(","))))


def _setting(variable: str, default: str, parse: Callable[[str, str], Any], help: str, secret: bool = False) -> Any:
    meta = {"variable": variable, "default": default, "parse": parse, "help": help, "secret": secret}
    return field(default=parse(variable, default), metadata=meta)


@dataclass(frozen=True)
class Settings:
    dataset: str = _setting(
        "SMALLDATA_DATASET",
        "cifar10",
        _text,
        "cifar10 (torchvision's download into the data folder) or a folder dataset",
    )
    runs_dir: Path = _setting("SMALLDATA_RUNS_DIR", "runs", _path, "where runs are saved, one JSON file each")
    weights_dir: Path = _setting(
        "SMALLDATA_WEIGHTS_DIR", "weights", _path, ".pth state_dicts offered on the Train page"
    )
    data_dir: Path = _setting("SMALLDATA_DATA_DIR", "data", _path, "where CIFAR-10 is downloaded")
    cache_dir: Path = _setting(
        "SMALLDATA_CACHE_DIR",
        "",
        _path,
        "decoded images, frozen features, step timings (default: the data folder's cache/)",
    )
    datasets_dir: Path = _setting(
        "SMALLDATA_DATASETS_DIR",
        "",
        _path,
        "datasets uploaded from the browser, one folder each (default: the data folder's datasets/)",
    )
    max_jobs: int = _setting(
        "SMALLDATA_MAX_JOBS", "1", _positive_int, "jobs running at once; each worker gets cores / N torch threads"
    )
    executor: str = _setting(
        "SMALLDATA_EXECUTOR",
        "process",
        _one_of("process", "ray"),
        "process (a worker process per job here) or ray (a Ray task per job)",
    )
    worker_linger_s: float = _setting(
        "SMALLDATA_WORKER_LINGER", "60", _seconds, "seconds a worker waits for a next job once its own are done"
    )
    launcher: str = _setting(
        "SMALLDATA_LAUNCHER",
        "on",
        _one_of("on", "off"),
        "on: workers are forked by a launcher that imported torch once; off: new processes",
    )
    launcher_idle_s: float = _setting(
        "SMALLDATA_LAUNCHER_IDLE", "600", _seconds, "seconds the launcher stays after its last worker"
    )
    launcher_dir: Path = _setting(
        "SMALLDATA_LAUNCHER_DIR",
        "",
        _path,
        "the launcher's socket, pid and log (default: a folder of this user's in $TMPDIR)",
    )
    timing_window_s: float = _setting(
        "SMALLDATA_TIMING_WINDOW",
        "2",
        _seconds,
        "seconds each step-time probe of an estimate averages over (longer: steadier on a busy host)",
    )
    stack_seeds: str = _setting(
        "SMALLDATA_STACK_SEEDS",
        "auto",
        _one_of("auto", "always", "never"),
        "auto: queued seeds of one recipe train stacked on a GPU; always (a CPU too); never",
    )
    plugins: tuple[str, ...] = _setting(
        "SMALLDATA_PLUGINS", "", _names, "modules imported at start, in the app and every worker (comma-separated)"
    )
    ray_address: str = _setting("RAY_ADDRESS", "", _text, "with the ray executor: the cluster to join (unset: local)")
    class_code: str = _setting(
        "SMALLDATA_CLASS_CODE",
        "",
        _text,
        "class mode: the code a student enters with a display name (unset, and no [auth] in secrets: single user)",
        secret=True,
    )
    teacher_code: str = _setting(
        "SMALLDATA_TEACHER_CODE", "", _text, "class mode: the code that signs a teacher in instead", secret=True
    )
    teachers: tuple[str, ...] = _setting(
        "SMALLDATA_TEACHERS", "", _names, "class mode: the accounts (e-mail with a login provider) that are teachers"
    )

    def __post_init__(self) -> None:
        # Defaults that depend on another setting, filled once.
        if not str(self.cache_dir) or str(self.cache_dir) == ".":
            object.__setattr__(self, "cache_dir", self.data_dir / "cache")
        if not str(self.datasets_dir) or str(self.datasets_dir) == ".":
            object.__setattr__(self, "datasets_dir", self.data_dir / "datasets")
        if not str(self.launcher_dir) or str(self.launcher_dir) == ".":
            object.__setattr__(self, "launcher_dir", Path(tempfile.gettempdir()) / f"smalldata-{os.getuid()}")

    @property
    def class_mode(self) -> bool:
        """A class code is set (a login provider in the app's secrets is the app's own business: ui.identity)."""
        return bool(self.class_code)

    def rows(self) -> list[dict[str, str]]:
        """Each setting in effect, for the sidebar and `python -m core settings`."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown = ", ".join(value) if isinstance(value, tuple) else str(value)
            if f.metadata["secret"] and shown:
                shown = "(set)"  # a code shown in the sidebar would sign anyone in
            out.append({"variable": f.metadata["variable"], "value": shown, "what": f.metadata["help"]})
        return out


# Settings that change how a run trains (not only where it is saved): recorded with every run.
RUN_SETTINGS = ("stack_seeds",)


def read(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of `environ` (default: this process's environment); SettingsError names a bad one."""
    environ = os.environ if environ is None else environ
    values = {}
    for f in fields(Settings):
        meta = f.metadata
        text = environ.get(meta["variable"], "").strip() or meta["default"]
        values[f.name] = meta["parse"](meta["variable"], text)
    return Settings(**values)


def current() -> Settings:
    return read()


def recorded() -> dict[str, str]:
    """The run-changing settings in effect, as a run records them."""
    s = current()
    return {name: str(getattr(s, name)) for name in RUN_SETTINGS}
