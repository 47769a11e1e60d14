"""Class mode in a real browser: two students and the teacher in three browser contexts at once.

Ana starts a run; Ben sees it in the class's queue without a Stop for it; the teacher stops it from the
Teacher page and Ana's page says who stopped it; a reload keeps everyone signed in (the cookie); and no
page shows a server path to anyone. Screenshots go to $SMALLDATA_SCREENSHOTS/class (default ./screenshots).
"""

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
    open_tiny_notebook_recipe,
    serve,
    set_number,
    settled,
)

PAGES = ["", "data", "train", "compare", "why", "notebook", "try_model", "board"]


@pytest.fixture
def class_server(dataset_dir, checkpoint, tmp_path):
    yield from serve(dataset_dir, checkpoint, tmp_path, {"SMALLDATA_CLASS_CODE": "owl-42",
                                                         "SMALLDATA_TEACHER_CODE": "t-secret"})  # fmt: skip


def join(browser, url: str, code: str, name: str):
    page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
    page.goto(url)
    page.get_by_label("Class code").fill(code)
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Join the class").click()
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible(timeout=60_000)
    return page


def no_server_path(page, paths: list[str], where: str) -> None:
    text = page.inner_text("body")
    leaks = [p for p in paths if p in text]
    assert not leaks, f"{where} shows {leaks}"


@pytest.mark.slow
def test_two_students_and_the_teacher_at_once(class_server, dataset_dir, tmp_path):
    url, runs_dir = class_server
    paths = [str(dataset_dir), str(tmp_path), str(ROOT), str(Path.home())]
    shots = Path(os.environ.get("SMALLDATA_SCREENSHOTS", ROOT / "screenshots")) / "class"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        sign_in = browser.new_context().new_page()
        sign_in.goto(url)
        expect(sign_in.get_by_label("Class code")).to_be_visible(timeout=60_000)
        sign_in.screenshot(path=shots / "sign-in.png")
        ana = join(browser, url, "owl-42", "Ana")
        ben = join(browser, url, "owl-42", "Ben")
        teacher = join(browser, url, "t-secret", "Ms Lee")

        open_tiny_notebook_recipe(ana)
        set_number(ana, "Epochs", "3000")
        ana.get_by_role("button", name="Start").click()
        expect(ana.get_by_text(re.compile(r"epoch \d+/3000"))).to_be_visible(timeout=90_000)
        ana.screenshot(path=shots / "ana-train.png")

        ben.goto(url + "/train")  # a new session of Ben's browser: the cookie signs him in
        expect(ben.get_by_text("Signed in as Ben")).to_be_visible(timeout=60_000)
        expect(ben.get_by_role("heading", name="The class's queue")).to_be_visible(timeout=30_000)
        expect(ben.get_by_text("No runs of yours yet.")).to_be_visible(timeout=30_000)
        expect(ben.get_by_text(re.compile(r"1 running on 1 worker slot"))).to_be_visible(timeout=30_000)
        assert ben.locator("[class*='st-key-stop_'] button").count() == 0  # no Stop for Ana's run
        ben.screenshot(path=shots / "ben-train.png")

        teacher.get_by_role("link", name="Teacher").first.click()
        expect(teacher.get_by_role("heading", name="The queue")).to_be_visible(timeout=30_000)
        teacher.get_by_role("combobox", name="Job").click()  # Ana's run (Ben's page may have queued a timing job)
        teacher.get_by_role("option", name=re.compile(r"Ana · running")).click()
        time.sleep(1.0)
        teacher.get_by_role("button", name="Stop it").click()
        expect(teacher.get_by_text(re.compile(r"Job \d+: stopping"))).to_be_visible(timeout=30_000)
        teacher.screenshot(path=shots / "teacher.png")
        expect(ana.get_by_text(re.compile("stopped by Ms Lee \\(teacher\\)")).first).to_be_visible(timeout=60_000)
        ana.screenshot(path=shots / "ana-stopped.png")

        # Every page of the student with a run and of the teacher (Ben's Train page is checked above: a
        # student without runs shows less of the server than Ana, who has one).
        no_server_path(ben, paths, "ben's train page")
        for who, page in (("ana", ana), ("teacher", teacher)):
            for name in [*PAGES, *(["teacher"] if who == "teacher" else [])]:
                page.goto(f"{url}/{name}")
                expect(page.get_by_text("Signed in as")).to_be_visible(timeout=60_000)
                settled(page)
                no_exception(page)
                no_server_path(page, paths, f"{who}'s {name or 'home'} page")
            page.screenshot(path=shots / f"{who}-last.png")
        ben.goto(f"{url}/teacher")  # not his: the page is not in his navigation
        expect(ben.get_by_text("Signed in as Ben")).to_be_visible(timeout=60_000)
        time.sleep(1)
        assert ben.get_by_role("heading", name="The queue").count() == 0
        browser.close()
    from core.runs.store import RunStore

    saved = RunStore(runs_dir).runs()
    assert [(r.owner, r.status) for r in saved if r.config.epochs == 3000] == [("Ana", "stopped")]
    assert "stopped by Ms Lee (teacher)" in saved[0].message
