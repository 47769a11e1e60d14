"""The real browser: the app served on a free port, driven by Playwright in Debian's Chromium.

Every page is opened and every button clicked once, as a new user would: Resample on the Data page;
Start, Stop and a run to its end on the Train page; evaluate the stopped run, download, export, import
and delete on Compare.
No page may show an exception. Screenshots go to $SMALLDATA_SCREENSHOTS (default ./screenshots).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SMALLDATA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(dataset_dir: Path, checkpoint: str, tmp_path: Path, extra_env: dict | None = None, port: int | None = None,
          args: tuple[str, ...] = ()):  # fmt: skip
    """Starts the app on a free port (or `port`, with more streamlit `args`); yields (url, runs folder), then
    ends the server and its workers."""
    port = port or free_port()
    # An offline "ImageNet" backbone for the teaching pages: a file named after its architecture.
    (tmp_path / "weights").mkdir(exist_ok=True)
    shutil.copy(checkpoint, tmp_path / "weights" / "tiny_cnn_pretrained.pth")
    env = (
        os.environ
        | {
            "SMALLDATA_DATASET": str(dataset_dir),
            "SMALLDATA_RUNS_DIR": str(tmp_path / "runs"),
            "SMALLDATA_CACHE_DIR": str(tmp_path / "cache"),
            "SMALLDATA_WEIGHTS_DIR": str(tmp_path / "weights"),
            "SMALLDATA_PLUGINS": "tests.plugins",
            "PYTHONPATH": str(ROOT),
        }
        | (extra_env or {})
    )
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           *args]  # fmt: skip
    # The server's log goes to a file: a pipe nobody reads fills up and blocks the server mid-shutdown.
    log_path = tmp_path / f"streamlit-{port}.log"
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        log.close()
        pytest.fail(f"streamlit did not start: {log_path.read_text()}")
    yield f"http://127.0.0.1:{port}", tmp_path / "runs"
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # a script run still busy in its thread; the test's checks are done
        proc.kill()
        proc.wait(timeout=10)
    log.close()
    # Workers outlive a server by design (a restart must not lose runs); a test ends its own.
    from core.jobs.queue import JobQueue

    for job in JobQueue(tmp_path / "runs" / "queue.sqlite").jobs(active_only=True):
        if job.pid:
            os.kill(job.pid, 9)


@pytest.fixture
def server(dataset_dir, checkpoint, tmp_path):
    yield from serve(dataset_dir, checkpoint, tmp_path)


def no_exception(page) -> None:
    time.sleep(0.25)  # an exception raised late in the script run has rendered by then
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, errors.first.inner_text()


def settled(page) -> None:
    """Waits until no script run is in progress (the toolbar's running indicator is gone)."""
    time.sleep(0.3)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=30_000)


def set_number(page, label: str, value: str) -> None:
    box = page.get_by_role("spinbutton", name=label, exact=True)
    box.fill(value)
    box.press("Enter")
    time.sleep(0.5)


def open_tiny_notebook_recipe(page) -> None:
    """The Train page, with the notebook's scratch recipe on the tiny test network."""
    page.get_by_role("link", name="Train").first.click()
    expect(page.get_by_role("heading", name="Train")).to_be_visible(timeout=30_000)
    page.get_by_role("combobox", name="Preset").click()
    page.get_by_role("option", name="notebook").click()
    time.sleep(1.0)
    pick_architecture(page, "tiny_cnn")
    time.sleep(1.0)


def pick_architecture(page, name: str) -> None:
    """The list holds every torchvision classifier (over 80, drawn a screenful at a time): typed, as a person
    looking for one would."""
    page.get_by_role("combobox", name="Architecture").click()
    page.keyboard.type(name)
    page.get_by_role("option", name=name, exact=False).first.click()


@pytest.mark.slow
def test_every_page_and_every_button_in_a_real_browser(server, dataset_dir, checkpoint, tmp_path):
    server_dataset = dataset_dir
    url, runs_dir = server
    shots = Path(os.environ.get("SMALLDATA_SCREENSHOTS", ROOT / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800}, accept_downloads=True)
        page.goto(url)
        expect(page.get_by_role("heading", name="Small Data Lab")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Class balance of the labeled images")).to_be_visible(timeout=30_000)
        no_exception(page)
        page.screenshot(path=shots / "home.png")

        page.get_by_role("link", name="Data and augmentations").first.click()
        expect(page.get_by_text("Pipeline A in torchvision")).to_be_visible(timeout=30_000)
        page.get_by_role("button", name="Resample").click()
        expect(page.get_by_role("spinbutton", name="Seed", exact=True)).to_have_value("1", timeout=15_000)
        no_exception(page)
        page.screenshot(path=shots / "data.png")
        # A class filter keeps images to preview (it once emptied the picker), and K=10 tiles stay >= 64 px.
        page.get_by_role("button", name="Clear all").first.click()  # the Classes filter
        settled(page)
        page.get_by_role("combobox", name="Classes").click()
        page.get_by_role("option", name="c1_green").click()
        page.keyboard.press("Escape")
        settled(page)
        expect(page.get_by_text("Pick at least one image")).to_have_count(0)
        thumb = page.get_by_role("slider", name="Samples per pipeline")
        thumb.focus()
        for key in ("End", "ArrowLeft", "ArrowLeft"):  # 12, 11, 10
            thumb.press(key)
        settled(page)
        expect(page.get_by_text("each row: original | 10 samples").first).to_be_visible(timeout=30_000)
        grids = page.locator("[data-testid='stImage'] img").last
        width = grids.bounding_box()["width"]
        assert width / 11 >= 64, width  # one pipeline per grid at K=10: the original and 10 samples a row
        no_exception(page)

        open_tiny_notebook_recipe(page)
        # The chosen backbone's facts (a torchvision one's: tests/test_torchvision_zoo.py; choosing one here would
        # queue its step-time measurement ahead of this run).
        expect(page.get_by_text(re.compile(r"no ImageNet weights .* parameters")).first).to_be_visible()
        set_number(page, "Learning rate", "0.001")
        set_number(page, "Epochs", "3000")
        set_number(page, "Test check every N epochs (0: off)", "1")
        # As a person would: the estimate first (a worker measures its step times), then Start. Clicked before it
        # shows, the timing job would queue behind the 3000-epoch run and the estimate wait for its end.
        expect(page.get_by_text("Estimated time")).to_be_visible(timeout=60_000)
        page.get_by_role("button", name="Start").click()
        from core.jobs.queue import JobQueue

        queue = JobQueue(runs_dir / "queue.sqlite")
        deadline = time.time() + 30
        while not (trains := [j.job_id for j in queue.jobs() if j.kind == "train"]) and time.time() < deadline:
            time.sleep(0.2)  # the click's rerun queues it
        run_job = max(trains)  # not job 1: the page's first view queued a timing job
        expect(page.get_by_text(f"Job {run_job}").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text(re.compile(r"epoch \d+/3000"))).to_be_visible(timeout=90_000)  # live progress
        expect(page.get_by_text("Estimated time")).to_be_visible(timeout=30_000)  # still shown while it trains
        page.screenshot(path=shots / "train-running.png")
        page.locator(f".st-key-stop_{run_job} button").click()  # by key: the toolbar has a "Stop" (the script) too
        expect(page.get_by_text("saved as").first).to_be_visible(timeout=30_000)
        page.screenshot(path=shots / "train-stopped.png")
        expect(page.get_by_text("the last check before Stop").first).to_be_visible()
        no_exception(page)
        set_number(page, "Epochs", "2")
        page.get_by_role("button", name="Start").click()
        expect(page.get_by_text("saved as")).to_have_count(2, timeout=60_000)
        no_exception(page)
        page.screenshot(path=shots / "train.png")
        assert len(list(runs_dir.glob("*.json"))) == 2

        page.get_by_role("link", name="Compare").first.click()
        expect(page.get_by_text("Results table")).to_be_visible(timeout=30_000)
        # The stopped run skipped its final test pass: Compare offers it, as a job with its own progress.
        expect(page.get_by_text("stopped before their final test pass")).to_be_visible(timeout=30_000)
        page.get_by_role("button", name=re.compile("Evaluate 1 now")).click()
        expect(page.get_by_text("stopped before their final test pass")).to_have_count(0, timeout=30_000)
        expect(page.get_by_text(re.compile("^Evaluating"))).to_have_count(0, timeout=90_000)  # its own progress bar
        settled(page)
        no_exception(page)
        expect(page.get_by_text("Confusion matrix").first).to_be_visible(timeout=30_000)
        # A filter that leaves nothing, then cleared: the runs to compare come back (they once stayed filtered).
        search = page.get_by_role("textbox", name="Search (model, preset, augmentation)")
        search.fill("no such run")
        search.press("Enter")
        expect(page.get_by_text("Select runs to compare.")).to_be_visible(timeout=30_000)
        search.fill("")
        search.press("Enter")
        expect(page.get_by_text("Select runs to compare.")).to_have_count(0, timeout=30_000)
        expect(page.get_by_text("Confusion matrix").first).to_be_visible(timeout=30_000)
        settled(page)
        with page.expect_download() as csv:
            page.get_by_role("button", name="Download CSV").click()
        assert "Model" in Path(csv.value.path()).read_text()
        with page.expect_download() as exported:
            page.get_by_role("button", name=re.compile(r"Export \d+ run")).click()
        blob = Path(exported.value.path()).read_bytes()
        if blob[:2] == b"PK":  # a zip: the stopped run kept its network's weights
            with zipfile.ZipFile(io.BytesIO(blob)) as z:
                blob = z.read("runs.json")
                assert any(name.startswith("weights/") for name in z.namelist())
        export = json.loads(blob)
        assert len(export["runs"]) >= 1
        page.screenshot(path=shots / "compare.png")

        page.get_by_text("Import runs from an export").click()
        bad = tmp_path / "bad.json"
        bad.write_text('{"runs": [{"run_id": "../x"}]}')
        page.locator("input[type='file']").set_input_files(str(bad))
        page.get_by_role("button", name="Import").click()
        expect(page.get_by_text("Nothing imported").first).to_be_visible(timeout=15_000)
        no_exception(page)

        doomed = page.get_by_role("combobox", name="Runs to delete")
        doomed.scroll_into_view_if_needed()
        settled(page)
        doomed.click()
        doomed.press("ArrowDown")
        doomed.press("Enter")
        doomed.press("Escape")
        settled(page)
        page.get_by_text("Yes, delete these runs for good").click()
        settled(page)
        delete = page.get_by_role("button", name="Delete")
        expect(delete).to_be_enabled(timeout=15_000)
        delete.click()
        expect(page.get_by_text("Deleted 1 run(s)").first).to_be_visible(timeout=15_000)
        no_exception(page)
        assert len(list(runs_dir.glob("*.json"))) == 1

        # The teaching views, with a label-spreading run (its head kept, its pseudo-labels in a gallery).
        from core.data.load import load_splits
        from core.methods.registry import preset
        from core.runs.store import RunStore
        from core.runs.train import execute

        splits = load_splits(server_dataset, cache_dir=tmp_path / "cache")
        cfg = preset("labelspread", "recommended", arch="tiny_cnn", weights=checkpoint, resolution=32,
                     normalize=False, epochs=20, lr=0.05, per_class=5, knn=3, device="cpu")  # fmt: skip
        execute(cfg, splits, RunStore(runs_dir), cache_dir=tmp_path / "cache")

        page.get_by_role("link", name="Why it works").first.click()
        page.get_by_text("Draw the maps", exact=True).first.click()
        page.get_by_role("button", name=re.compile(r"Compute 2 maps \(about \d+ s\)")).click()  # a worker draws them
        # The two maps, and the Whitened stem tab's spectrum (hidden tabs are drawn too).
        expect(page.locator("[data-testid='stVegaLiteChart']")).to_have_count(3, timeout=90_000)
        settled(page)
        no_exception(page)
        page.screenshot(path=shots / "why-map.png")
        page.get_by_role("tab", name="Label spreading, step by step").click()
        page.get_by_text("Replay label spreading", exact=True).first.click()
        page.get_by_role("button", name=re.compile(r"Compute the replay")).click()
        expect(page.get_by_text(re.compile("of the points reached")).first).to_be_visible(timeout=90_000)
        settled(page)
        no_exception(page)
        page.screenshot(path=shots / "why-spread.png")
        page.get_by_role("tab", name="Pseudo-label gallery").click()
        expect(page.get_by_text(re.compile("accepted; of the")).first).to_be_visible(timeout=30_000)
        no_exception(page)
        page.get_by_role("tab", name="Whitened stem").click()
        expect(page.get_by_text(re.compile("The 12 filters, largest variance first")).first).to_be_visible()
        no_exception(page)
        page.screenshot(path=shots / "why-stem.png")

        page.get_by_role("link", name="Try a model").first.click()
        expect(page.get_by_text("true class").first).to_be_visible(timeout=60_000)
        settled(page)
        no_exception(page)
        page.get_by_text("Upload a PNG or JPEG").click()
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
        page.locator("input[type='file']").set_input_files(str(broken))
        expect(page.get_by_text("This file cannot be used").first).to_be_visible(timeout=30_000)
        empty = tmp_path / "empty.png"
        empty.write_bytes(b"")  # a 0-byte file once gave no message at all
        page.locator("input[type='file']").set_input_files(str(empty))
        expect(page.get_by_text("the file is empty").first).to_be_visible(timeout=30_000)
        no_exception(page)
        page.screenshot(path=shots / "try.png")

        page.get_by_role("link", name="The notebook, replayed").first.click()
        expect(page.get_by_text("Results, in the notebook's format")).to_be_visible(timeout=30_000)
        expect(page.get_by_text(re.compile(r"min per seed here|time per seed not known yet")).first).to_be_visible()
        expect(page.get_by_text("The whole notebook:").first).to_be_visible()
        expect(page.locator(".st-key-nb_all button")).to_be_enabled()
        for step in ("semi", "scratch", "transfer", "augment"):  # every experiment's button, once: 3 seeds each
            button = page.locator(f".st-key-nb_{step} button")
            button.scroll_into_view_if_needed()
            settled(page)
            expect(button).to_be_enabled(timeout=30_000)
            button.click()
            settled(page)
            expect(button).to_be_disabled(timeout=30_000)  # all seeds queued (or done)
            no_exception(page)
        # Every seed queued: Run the whole notebook has nothing left to queue (it is clicked on the AppTest side).
        expect(page.locator(".st-key-nb_all button")).to_be_disabled(timeout=30_000)
        expect(page.get_by_text("Every experiment has its seeds done or queued")).to_be_visible()
        no_exception(page)
        page.screenshot(path=shots / "notebook.png", full_page=True)
        browser.close()
