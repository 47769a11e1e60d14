"""The app's side of `python -m core bench` (it needs Streamlit and Playwright, which core must not
import): prints one JSON object.

- rerun: the Train page's script time (AppTest) while a run trains in a worker process, and idle
  afterwards with the same job on the page;
- browser: three recipes (the notebook's scratch and transfer, labelspread recommended cold) from the CLI,
  through the queue with no page open, and queued in the app with its Train page open in Chromium; each
  over --repeats interleaved rounds (default 3), medians reported: one run per context is within the noise
  of the 1.1 target on a shared 2-core host;
- why: the Streamlit server process's own CPU seconds while a cold feature map (an empty feature cache)
  is computed end to end, from the Compute click to both maps drawn in Chromium (a worker computes it).

Usage: python benchmarks/app_bench.py --dataset DIR --cache-dir DIR [--weights-dir DIR] [--epochs N] [--recipes A,B]
       [--parts rerun,browser,why] [--repeats N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.caches import decoded_only  # noqa: E402
from core.access import SINGLE_USER as ME  # noqa: E402
from core.jobs.supervisor import Supervisor  # noqa: E402
from core.methods.registry import preset  # noqa: E402

CHROMIUM = os.environ.get("SMALLDATA_CHROMIUM", "/usr/bin/chromium")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def page_rerun_seconds(reruns: int) -> float:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/train.py")
    at.run()
    times = []
    for _ in range(reruns):
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
    assert not at.exception, at.exception
    return statistics.median(times)


def rerun_while_training(dataset: str, cache: Path, reruns: int) -> dict[str, float]:
    runs = Path(tempfile.mkdtemp(prefix="bench-rerun-"))
    os.environ |= {"SMALLDATA_DATASET": dataset, "SMALLDATA_RUNS_DIR": str(runs), "SMALLDATA_CACHE_DIR": str(cache)}
    page_rerun_seconds(1)  # warm: the dataset, the estimate's step timings
    reg = Supervisor(runs, dataset, cache_dir=cache)
    job = reg.submit(preset("scratch", "notebook", epochs=1000, eval_every=0), by=ME)
    while len(reg.get(job.job_id).history) < 2:
        time.sleep(0.5)
    busy = page_rerun_seconds(reruns)
    reg.stop(job.job_id, ME)
    reg.wait(timeout=60)
    reg.close()
    # Idle: the same page with the same job on it (stopped now, its curves still drawn), nothing training.
    idle = page_rerun_seconds(reruns)
    log(f"  Train page rerun: idle {idle:.3f}s, while a run trains {busy:.3f}s")
    return {"rerun_idle_s": idle, "rerun_busy_s": busy, "rerun_ratio": busy / idle}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """A process's own CPU time (user + system, all its threads; not its children's) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def served_app(env_extra: dict[str, str], pid: list[int] | None = None) -> Iterator[str]:
    """`streamlit run app.py` on a free local port with env_extra set; yields its URL (pid gets its pid)."""
    port = free_port()
    env = os.environ | {"PYTHONPATH": str(ROOT)} | env_extra
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1", "--server.port",
         str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    if pid is not None:
        pid.append(server.pid)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def open_when_up(page, url: str) -> None:
    """page.goto(url), retried while the server starts."""
    for _ in range(120):
        try:
            page.goto(url)
            return
        except Exception:
            time.sleep(0.5)


# The three recipes of the app-vs-CLI check (issue 27): (method, preset, overrides, needs weights, cold).
# "cold": each context starts from an empty feature cache (the decoded images are shared), as a first run does.
RECIPES = {
    "scratch_notebook": ("scratch", "notebook", {"eval_every": 0}, False, False),
    "transfer_notebook": ("transfer", "notebook", {}, True, False),
    "labelspread_recommended_cold": ("labelspread", "recommended", {}, True, True),
}


def recipe_config(name: str, epochs: int | None, weights: str):
    method, preset_name, overrides, needs_weights, _cold = RECIPES[name]
    overrides = overrides | ({"weights": weights} if needs_weights else {})
    if epochs and method == "scratch":
        overrides["epochs"] = epochs
    return preset(method, preset_name, **overrides)


def config_flags(cfg) -> list[str]:
    """The CLI flags of cfg's non-default fields (its method and preset first)."""
    from core.config import CLI_ALIASES, TrainConfig

    base, flags = TrainConfig(), ["--method", cfg.method, "--preset", cfg.preset]
    for name, value in cfg.to_dict().items():
        if name in ("method", "preset") or value == getattr(base, name):
            continue
        flag = "--" + CLI_ALIASES.get(name, name).replace("_", "-")
        flags += [flag if value else f"--no-{flag[2:]}"] if isinstance(value, bool) else [flag, str(value)]
    return flags


def fresh_cache(cache: Path, cold: bool) -> Path:
    """The shared cache, or (cold) a new one holding only its decoded images: features start empty."""
    if not cold:
        return cache
    return decoded_only(cache)


def through_cli(cfg, dataset: str, cache: Path, queued: bool) -> float:
    """A run's seconds from `python -m core train`, or (queued) `python -m core submit --wait`: a worker."""
    runs = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    command = ["submit", "--wait"] if queued else ["train", "--json"]
    out = subprocess.run([sys.executable, "-m", "core", *command, *config_flags(cfg), "--dataset", dataset,
                          "--runs-dir", str(runs), "--cache-dir", str(cache)],
                         capture_output=True, text=True, cwd=ROOT, check=True)  # fmt: skip
    return json.loads(out.stdout)["seconds"]


def chromium_cpu_seconds() -> float:
    """CPU time of every Chromium process now alive (user + system), from /proc."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"chromium" in (proc / "cmdline").read_bytes():
                total += cpu_seconds(int(proc.name))
        except OSError:
            continue
    return total


def with_page_open(cfg, dataset: str, cache: Path) -> tuple[float, float, float]:
    """A run's seconds queued in the app, its Train page open in Chromium the whole time; and the CPU seconds
    the Streamlit server and Chromium spent meanwhile (on the same cores as the run)."""
    from playwright.sync_api import sync_playwright

    runs = Path(tempfile.mkdtemp(prefix="bench-app-"))
    env = {"SMALLDATA_DATASET": dataset, "SMALLDATA_RUNS_DIR": str(runs), "SMALLDATA_CACHE_DIR": str(cache)}
    pid: list[int] = []
    with served_app(env, pid) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        open_when_up(page, f"{url}/train")
        page.get_by_role("heading", name="Train").wait_for(timeout=300_000)
        # Queued as the Start button's callback does; the server's own supervisor starts the worker. Then
        # what the click does next: a rerun of the page in its session (Streamlit's R key), not a reload (a new
        # session and the whole page drawn afresh, which Start never does).
        reg = Supervisor(runs, dataset, cache_dir=cache, start=False)
        job = reg.submit(cfg, by=ME)
        page.get_by_role("heading", name="Train").click()
        page.keyboard.press("r")
        page.get_by_text(f"Job {job.job_id}").first.wait_for(timeout=120_000)
        server_before, chromium_before = cpu_seconds(pid[0]), chromium_cpu_seconds()
        while not reg.get(job.job_id).done:
            time.sleep(0.5)
        server_s, chromium_s = cpu_seconds(pid[0]) - server_before, chromium_cpu_seconds() - chromium_before
        page.get_by_text("saved as").first.wait_for(timeout=60_000)
        browser.close()
    return reg.store.load(reg.get(job.job_id).run_id).timings["total_s"], server_s, chromium_s


CONTEXTS = ("cli", "queue", "page")


def one_context(context: str, cfg, dataset: str, cache: Path) -> tuple[float, float, float]:
    """A run's seconds in one context, and the server's and Chromium's CPU seconds meanwhile (page only)."""
    if context == "page":
        return with_page_open(cfg, dataset, cache)
    return through_cli(cfg, dataset, cache, queued=context == "queue"), 0.0, 0.0


def app_vs_cli(dataset: str, cache: Path, epochs: int | None, weights: str, recipes: list[str], repeats: int) -> dict:
    """Each recipe from the CLI, through the queue with no page open, and with its Train page open: the median
    seconds of each over `repeats` rounds and the two ratios of medians to the CLI (each run cold where the
    recipe is). The rounds interleave the three contexts, in an order rotated each round, so that a slow
    spell of the host falls on all three alike rather than on whichever context ran during it."""
    out = {}
    for name in recipes:
        cfg, cold = recipe_config(name, epochs, weights), RECIPES[name][4]
        seconds: dict[str, list[float]] = {c: [] for c in CONTEXTS}
        server, chromium = [], []
        for round_ in range(repeats):
            for context in CONTEXTS[round_ % len(CONTEXTS) :] + CONTEXTS[: round_ % len(CONTEXTS)]:
                s, server_s, chromium_s = one_context(context, cfg, dataset, fresh_cache(cache, cold))
                seconds[context].append(s)
                if context == "page":
                    server.append(server_s)
                    chromium.append(chromium_s)
                log(f"    {name} round {round_ + 1}/{repeats}, {context}: {s:.1f}s")
        cli_s, queue_s, page_s = (statistics.median(seconds[c]) for c in CONTEXTS)
        server_s, chromium_s = statistics.median(server), statistics.median(chromium)
        log(f"  {name} (median of {repeats}): CLI {cli_s:.1f}s, queue {queue_s:.1f}s ({queue_s / cli_s:.2f}x), "
            f"Train page open {page_s:.1f}s ({page_s / cli_s:.2f}x; meanwhile the server's CPU {server_s:.1f}s, "
            f"Chromium's {chromium_s:.1f}s)")  # fmt: skip
        out |= {f"{name}_cli_s": cli_s, f"{name}_queue_s": queue_s, f"{name}_page_open_s": page_s,
                f"{name}_queue_vs_cli": queue_s / cli_s, f"{name}_page_vs_cli": page_s / cli_s,
                f"{name}_server_cpu_s": server_s, f"{name}_chromium_cpu_s": chromium_s, f"{name}_repeats": repeats,
                **{f"{name}_{c}_each_s": seconds[c] for c in CONTEXTS}}  # fmt: skip
    return out


def why_map_server_cpu(dataset: str, cache: Path, weights_dir: str) -> dict[str, float]:
    """Server CPU seconds while the Why page's two maps (random and ImageNet, 1,000 test images at 96 px)
    are computed cold, end to end in Chromium: the decoded images are reused, no feature, map or view is."""
    from playwright.sync_api import sync_playwright

    cold = decoded_only(cache, prefix="bench-why-")
    runs = Path(tempfile.mkdtemp(prefix="bench-why-runs-"))
    env = {"SMALLDATA_DATASET": dataset, "SMALLDATA_RUNS_DIR": str(runs), "SMALLDATA_CACHE_DIR": str(cold),
           "SMALLDATA_WEIGHTS_DIR": weights_dir}  # fmt: skip
    pid: list[int] = []
    with served_app(env, pid) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        open_when_up(page, f"{url}/why")
        page.get_by_text("a random network and", exact=False).first.wait_for(timeout=300_000)  # the dataset is in
        button = page.get_by_role("button", name=re.compile("Compute 2 maps"))
        for _ in range(10):  # a click during the page's first script run can be lost: until the button shows
            page.get_by_test_id("stStatusWidget").wait_for(state="detached", timeout=120_000)
            if page.get_by_role("switch", name="Draw the maps").is_checked():
                break
            page.get_by_text("Draw the maps", exact=True).first.click()
            time.sleep(3.0)
        button.wait_for(timeout=120_000)
        time.sleep(2.0)  # the page's own script run is over
        before, t = cpu_seconds(pid[0]), time.perf_counter()
        if os.environ.get("SMALLDATA_PROFILE_SERVER"):  # where the server's CPU goes (py-spy, a developer's tool)
            subprocess.Popen(["py-spy", "record", "-d", "60", "-o", os.environ["SMALLDATA_PROFILE_SERVER"], "-f",
                              "speedscope", "-p", str(pid[0])])  # fmt: skip
        button.click()
        charts = page.locator("[data-testid='stVegaLiteChart']")
        deadline = time.time() + 600
        while charts.count() < 3 and time.time() < deadline:  # the two maps and the stem tab's spectrum
            time.sleep(0.5)
        wall = time.perf_counter() - t
        server = cpu_seconds(pid[0]) - before
        browser.close()
    log(f"  cold Why maps: {wall:.1f}s from the click to both drawn; the server's own CPU {server:.2f}s")
    return {"why_wall_s": wall, "why_server_cpu_s": server}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True)
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--epochs", type=int, default=None, help="scratch's epochs (default: the notebook preset's)")
    p.add_argument("--weights", default=None, help="the transfer recipes' .pth (default: mobilenet_v2*.pth there)")
    p.add_argument("--recipes", default=None, help=f"comma-separated, of {', '.join(RECIPES)} (default: all)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--weights-dir", default=None, help="a folder with the ImageNet checkpoint, for the Why map")
    p.add_argument("--parts", default="rerun,browser,why")
    p.add_argument("--repeats", type=int, default=3, help="browser: interleaved rounds per recipe, medians reported")
    a = p.parse_args()
    cache = Path(a.cache_dir)
    parts = a.parts.split(",")
    result = {}
    if "why" in parts:
        result |= why_map_server_cpu(a.dataset, cache, a.weights_dir or str(ROOT / "weights"))
    if "rerun" in parts:
        result |= rerun_while_training(a.dataset, cache, 3 if a.quick else 7)
    if "browser" in parts:
        weights = a.weights or str(next(Path(a.weights_dir or ROOT / "weights").glob("mobilenet_v2*.pth"), ""))
        recipes = a.recipes.split(",") if a.recipes else list(RECIPES)
        result |= app_vs_cli(
            a.dataset, cache, 1 if a.quick else a.epochs, weights, recipes, 1 if a.quick else a.repeats
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
