"""One real-browser test: the app served on a free port, driven by Playwright in Debian's Chromium.

Opens every page, starts a 1-epoch run on the Train page, waits for it, and finds it on the Compare
page. Screenshots of each page go to $SMALLDATA_SCREENSHOTS (default: ./screenshots, not committed).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
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


@pytest.fixture
def server(dataset_dir, tmp_path):
    port = free_port()
    env = os.environ | {
        "SMALLDATA_DATASET": str(dataset_dir),
        "SMALLDATA_RUNS_DIR": str(tmp_path / "runs"),
        "SMALLDATA_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(ROOT),
    }
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail(f"streamlit did not start: {proc.stdout.read()}")
    yield f"http://127.0.0.1:{port}", tmp_path / "runs"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.slow
def test_every_page_and_a_run_in_a_real_browser(server):
    url, runs_dir = server
    shots = Path(os.environ.get("SMALLDATA_SCREENSHOTS", ROOT / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(url)
        expect(page.get_by_role("heading", name="Small Data Lab")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Class balance of the labeled images")).to_be_visible(timeout=30_000)
        page.screenshot(path=shots / "home.png")

        page.get_by_role("link", name="Data and augmentations").first.click()
        expect(page.get_by_text("Pipeline A in torchvision")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("v2.RandomCrop(size=32, padding=4)").first).to_be_visible()
        page.screenshot(path=shots / "data.png")

        page.get_by_role("link", name="Train").first.click()
        expect(page.get_by_role("heading", name="Train")).to_be_visible(timeout=30_000)
        for label, value in (("Epochs", "1"), ("Learning rate", "0.001")):
            box = page.get_by_label(label, exact=True)
            box.fill(value)
            box.press("Enter")
            time.sleep(1.0)
        expect(page.get_by_text("Estimated time")).to_be_visible(timeout=30_000)
        page.get_by_role("button", name="Start").click()
        expect(page.get_by_text("saved as").first).to_be_visible(timeout=120_000)
        page.screenshot(path=shots / "train.png")
        saved = list(runs_dir.glob("*.json"))
        assert len(saved) == 1

        page.get_by_role("link", name="Compare").first.click()
        expect(page.get_by_text("Results table")).to_be_visible(timeout=30_000)
        # The run is selected for comparison by default, so its detail (confusion matrix) is drawn.
        expect(page.get_by_text("Confusion matrix")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Learning curves")).to_be_visible()
        page.screenshot(path=shots / "compare.png")
        browser.close()
