"""Your images in a real browser: a zip of class folders becomes a dataset chosen in the sidebar, transfer and
labelspread runs on it finish with a cross-validated accuracy that Compare shows; a flat zip is labelled with
the keyboard and a click, then trained on. Screenshots go to $SMALLDATA_SCREENSHOTS (default ./screenshots)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    no_exception,
    pick_architecture,
    serve,
    set_number,
    settled,
)
from tests.test_datasets import COLOURS, class_folders, make_zip, photo


@pytest.fixture
def images_server(dataset_dir, checkpoint, tmp_path):
    yield from serve(dataset_dir, checkpoint, tmp_path, {"SMALLDATA_DATASETS_DIR": str(tmp_path / "datasets")})


def upload(page, path: Path) -> None:
    page.get_by_role("link", name="Your images").first.click()
    expect(page.get_by_role("heading", name="Your images")).to_be_visible(timeout=30_000)
    settled(page)
    if not page.get_by_role("button", name="Make a dataset").is_visible():  # folded once a dataset is chosen
        page.get_by_text("Bring images in", exact=True).click()
    page.locator("input[type='file']").set_input_files(str(path))
    page.get_by_text("32", exact=True).click()  # the resolution: CIFAR's, the fastest
    settled(page)
    page.get_by_role("button", name="Make a dataset").click()
    expect(page.get_by_text("is ready").first).to_be_visible(timeout=60_000)
    no_exception(page)


def start(page, method: str, runs_dir: Path, epochs: str | None = None) -> None:
    """Train: `method` on the tiny test network with its default preset (epochs: fewer than the preset's);
    waits for its cross-validated run."""
    page.get_by_role("link", name="Train").first.click()
    expect(page.get_by_role("heading", name="Train")).to_be_visible(timeout=30_000)
    page.get_by_text(method, exact=True).first.click()
    time.sleep(1.0)
    pick_architecture(page, "tiny_cnn")
    settled(page)
    expect(page.get_by_text("has no test set").first).to_be_visible(timeout=30_000)
    if epochs:
        set_number(page, "Epochs", epochs)
        settled(page)
    page.get_by_role("button", name="Start").click()
    from core.runs.store import RunStore

    deadline = time.time() + 240
    while not [r for r in RunStore(runs_dir).runs() if r.config.method == method] and time.time() < deadline:
        time.sleep(1.0)
    (run,) = [r for r in RunStore(runs_dir).runs() if r.config.method == method]
    assert run.status == "finished" and len(run.metrics.cv_accuracies) == 5, run.message
    expect(page.get_by_text(re.compile(r"Cross-validated accuracy \d+\.\d% ± \d+\.\d% over 5 folds")).first
           ).to_be_visible(timeout=30_000)  # fmt: skip
    no_exception(page)


@pytest.mark.slow
def test_own_images_from_upload_to_cross_validated_runs_in_a_browser(images_server, tmp_path):
    url, runs_dir = images_server
    shots = Path(os.environ.get("SMALLDATA_SCREENSHOTS", ROOT / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    folders = tmp_path / "photos.zip"
    folders.write_bytes(class_folders(per_class=10, unlabeled=200))
    flat = tmp_path / "phone.zip"
    flat.write_bytes(make_zip({f"IMG_{j:04d}.jpg": photo(list(COLOURS.values())[j % 3], (160, 120), "RGB", "JPEG", j)
                               for j in range(15)}))  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url)
        expect(page.get_by_role("heading", name="Small Data Lab")).to_be_visible(timeout=60_000)

        upload(page, folders)
        expect(page.get_by_text("3 classes, 30 labeled, 200 unlabeled, 0 test images")).to_be_visible()
        expect(page.get_by_role("combobox", name="Dataset")).to_have_value("photos")  # chosen in the sidebar
        start(page, "transfer", runs_dir)
        start(page, "labelspread", runs_dir)
        page.screenshot(path=shots / "own-train.png")

        page.get_by_role("link", name="Compare").first.click()
        expect(page.get_by_text("Results table (one row")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("k-fold cross-validation").first).to_be_visible()
        page.get_by_text("Markdown (copy", exact=False).click()  # the results table as text (a data grid is a canvas)
        table = page.get_by_test_id("stCode")
        expect(table).to_contain_text("5-fold cross-validation", timeout=15_000)
        expect(table).to_contain_text(re.compile(r"labelspread.*\d+\.\d% ± \d+\.\d% over folds"))
        expect(table).to_contain_text(re.compile(r"transfer.*\d+\.\d% ± \d+\.\d% over folds"))
        no_exception(page)
        page.screenshot(path=shots / "own-compare.png")

        upload(page, flat)
        for name in ("blue", "green", "red"):
            page.get_by_role("textbox", name="New class").fill(name)
            page.get_by_role("button", name="Add the class").click()
            settled(page)
        expect(page.locator(".st-key-next_2 button")).to_contain_text("red")  # key 3
        for key in "123123123":  # the keyboard labels the next image
            page.get_by_role("heading", name="Your images").click()  # the keys go to the page, not a text box
            page.keyboard.press(key)
            settled(page)
        page.get_by_role("button", name="→ blue").first.click()  # a click labels an image of the grid
        settled(page)
        page.get_by_role("button", name="Undo").click()
        settled(page)
        expect(page.get_by_text("Took the last label back")).to_be_visible()
        page.get_by_role("button", name="→ blue").first.click()
        settled(page)
        expect(page.get_by_text("blue: 4 labeled")).to_be_visible()
        expect(page.get_by_text("5 unlabeled images left")).to_be_visible()
        no_exception(page)
        page.screenshot(path=shots / "own-labelling.png")

        start(page, "scratch", runs_dir, epochs="40")  # its preset's 720 epochs six times (5 folds and all) take 35 s
        page.get_by_role("combobox", name="Dataset").click()  # back to the first upload, from the sidebar
        page.get_by_role("option", name="photos").click()
        settled(page)
        page.get_by_role("link", name="Your images").first.click()
        expect(page.get_by_role("heading", name="Label: photos")).to_be_visible(timeout=30_000)
        no_exception(page)
        browser.close()
