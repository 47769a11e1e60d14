"""Starts workers in a fraction of a second: a process that has imported torch once forks one per job.

A fresh `python -m core worker` spends about 5 s of CPU importing torch and torchvision before it
trains (more than a tiny run's training). The launcher pays that once: it imports them, listens on a
Unix socket and forks a child per request, which sets its own session, log, folder, environment and
arguments and then runs `core.cli.main(argv)` as the worker would. The launcher never runs a tensor
operation itself: a process forked after OpenMP has started its threads would deadlock.

One launcher per user, interpreter and checkout (the socket's name hashes them with this file), shared
by every server and kept SMALLDATA_LAUNCHER_IDLE seconds (600) after its last child. Each connection
stays open while its child runs and carries the child's exit status, so the server sees a handle much
like subprocess.Popen. Linux only (fork after importing torch is unsafe on macOS); SMALLDATA_LAUNCHER=off
starts every worker as its own process, as does anything that goes wrong here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from core import settings

PRELOAD = ("torch", "torchvision", "numpy", "PIL.Image")


def enabled() -> bool:
    return sys.platform.startswith("linux") and settings.current().launcher == "on"


def socket_path() -> Path:
    """Private to this user; names this interpreter, checkout and launcher code, so that a launcher of
    another checkout or an older launcher.py is never used."""
    root = Path(__file__).resolve().parents[2]
    key = f"{sys.executable}|{root}|{hashlib.sha1(Path(__file__).read_bytes()).hexdigest()}"
    folder = settings.current().launcher_dir
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder / f"launcher-{hashlib.sha1(key.encode()).hexdigest()[:12]}.sock"


# ---- the server's side


def _connect(timeout: float = 2.0) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(str(socket_path()))
        return conn
    except OSError:
        conn.close()
        return None


def _ask(request: dict, timeout: float = 5.0) -> tuple[dict, socket.socket] | None:
    conn = _connect()
    if conn is None:
        return None
    try:
        conn.settimeout(timeout)
        conn.sendall(json.dumps(request).encode() + b"\n")
        reply = conn.makefile("rb", buffering=0).readline()  # unbuffered: the exit status is read later
        return json.loads(reply), conn
    except (OSError, ValueError):
        conn.close()
        return None


def ready() -> bool:
    """Whether a launcher answers now."""
    conn = _connect() if enabled() else None
    if conn is not None:
        conn.close()  # at once: the launcher serves one connection at a time
    return conn is not None


def start(env: dict[str, str]) -> None:
    """Starts a launcher in the background unless one answers or is starting (ready about 5 s later)."""
    if not enabled() or ready():
        return
    pidfile = socket_path().with_suffix(".pid")
    try:
        starting = int(pidfile.read_text())
        if pid_alive(starting) and b"core.jobs.launcher" in Path(f"/proc/{starting}/cmdline").read_bytes():
            return  # started a moment ago by this or another server: one is enough
    except (OSError, ValueError):
        pass
    with open(socket_path().with_suffix(".log"), "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.jobs.launcher"], env=env, cwd=Path(__file__).resolve().parents[2],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    pidfile.write_text(str(proc.pid))


class Launched:
    """A worker forked by the launcher: pid, poll(), returncode, kill() and wait() as subprocess.Popen."""

    def __init__(self, pid: int, conn: socket.socket) -> None:
        self.pid, self._conn, self.returncode = pid, conn, None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._conn], [], [], 0)[0]:
            try:
                line = self._conn.makefile("rb", buffering=0).readline()
                self.returncode = int(json.loads(line)["exit"]) if line else None
            except (OSError, ValueError, KeyError):
                pass
            if self.returncode is None:  # the launcher died: its child lives on without it
                self.returncode = None if pid_alive(self.pid) else -signal.SIGKILL
            if self.returncode is not None:
                self._conn.close()
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.time() + timeout
        while self.poll() is None:
            if deadline is not None and time.time() > deadline:
                raise subprocess.TimeoutExpired("worker", timeout)
            time.sleep(0.05)
        return self.returncode


def launch(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> Launched | None:
    """Forks `python -m core <argv>` from the launcher; None when there is no launcher to ask."""
    if not enabled():
        return None
    answer = _ask({"argv": argv, "env": env, "cwd": str(cwd), "log": str(log)})
    if answer is None or "pid" not in answer[0]:
        return None
    return Launched(int(answer[0]["pid"]), answer[1])


def children() -> list[dict]:
    """[{pid, argv}] of the workers the launcher runs now (empty without a launcher)."""
    answer = _ask({"children": True}) if enabled() else None
    if answer is None:
        return []
    answer[1].close()
    return answer[0].get("children", [])


def stop() -> None:
    """Ends the launcher (its running workers go on without it)."""
    conn = _connect() if enabled() else None
    if conn is not None:
        try:
            conn.sendall(b'{"quit": true}\n')
        finally:
            conn.close()


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's


# ---- the launcher's side


def _run_child(request: dict, inherited: list) -> None:
    """In the forked child: become the worker `python -m core <argv>` would have been; never returns."""
    code = 1
    try:
        for held in inherited:  # the launcher's sockets and pipe are not the worker's
            os.close(held) if isinstance(held, int) else held.close()
        os.setsid()  # a server restart leaves it alone, as start_new_session does
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
            if entry and entry not in sys.path:
                sys.path.insert(0, entry)
        sys.argv = [str(Path(__file__).parents[1]), *request["argv"]]
        import runpy

        runpy.run_module("core", run_name="__main__", alter_sys=True)  # as `python -m core <argv>`: exits
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code or 0)


def serve() -> None:
    for name in PRELOAD:  # what every worker imports: paid here, once
        __import__(name)
    path = socket_path()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temp = path.with_name(f"{path.name}.{os.getpid()}")
    server.bind(str(temp))
    os.chmod(temp, 0o600)
    server.listen(16)
    os.replace(temp, path)  # atomically: a second launcher started at the same moment takes over the name
    ours = os.stat(path).st_ino
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the fd above
    running: dict[int, tuple[socket.socket, list[str]]] = {}
    last_busy = time.time()
    print(f"launcher {os.getpid()} ready on {path}", flush=True)
    while running or time.time() - last_busy < settings.current().launcher_idle_s:
        if not running and not _owns(path, ours):
            break  # another launcher owns the name now
        ready = select.select([server, wake_r], [], [], 5.0)[0]
        if wake_r in ready:
            os.read(wake_r, 512)
        while running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn, _ = running.pop(pid, (None, None))
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                conn.close()
            last_busy = time.time()
        if server in ready:
            conn, _ = server.accept()
            try:
                conn.settimeout(5)
                request = json.loads(conn.makefile("rb").readline())
            except (OSError, ValueError):
                conn.close()
                continue
            if request.get("quit"):
                conn.close()
                break
            if request.get("children"):
                listing = [{"pid": p, "argv": a} for p, (_, a) in running.items()]
                conn.sendall(json.dumps({"children": listing}).encode() + b"\n")
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                _run_child(request, [server, conn, wake_r, wake_w, *(c for c, _ in running.values())])
            running[pid] = (conn, request["argv"])
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            last_busy = time.time()
    if _owns(path, ours):
        path.unlink()


def _owns(path: Path, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    serve()
