"""README screenshots of the teaching pages on real data, and the cold time of the feature maps.

Serves the app on a free port with the given dataset and weights folder and drives it in Chromium:
the Why it works page's two maps (timed from the toggle to both charts drawn, with an empty cache),
label spreading replayed at 5 iterations and the whitened stem.

Usage: python benchmarks/screenshots.py --dataset DIR --weights-dir DIR --out docs/screenshots
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from app_bench import CHROMIUM, open_when_up, served_app  # noqa: E402


def settled(page) -> None:
    page.wait_for_timeout(300)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=180_000)


def main() -> int:
    from playwright.sync_api import expect, sync_playwright

    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True)
    p.add_argument("--weights-dir", required=True)
    p.add_argument("--out", default="docs/screenshots")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="shots-"))
    env = {"SMALLDATA_DATASET": a.dataset, "SMALLDATA_WEIGHTS_DIR": a.weights_dir,
           "SMALLDATA_RUNS_DIR": str(tmp / "runs"), "SMALLDATA_CACHE_DIR": str(tmp / "cache")}  # fmt: skip
    with served_app(env) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        open_when_up(page, f"{url}/why")
        page.get_by_role("heading", name="Why it works").wait_for(timeout=300_000)
        hint = page.get_by_text("a random network and", exact=False)
        hint.first.wait_for(timeout=300_000)  # the dataset is decoded once (cached on disk)
        settled(page)
        t = time.perf_counter()
        page.get_by_text("Draw the maps", exact=True).first.click()
        expect(hint).to_have_count(0, timeout=30_000)
        # Two maps, and the Whitened stem tab's spectrum (every tab is drawn, the hidden ones too).
        expect(page.locator("[data-testid='stVegaLiteChart']")).to_have_count(3, timeout=300_000)
        settled(page)
        cold = time.perf_counter() - t
        print(f"two cold maps (random and ImageNet, 1,100 points each): {cold:.1f} s")
        page.screenshot(path=out / "why-map.png")
        # Hover: sweep the ImageNet map until vega-tooltip shows a point's image.
        box = page.locator("[data-testid='stVegaLiteChart']").nth(1).bounding_box()
        tooltip = page.locator("#vg-tooltip-element img")
        for i in range(400):
            page.mouse.move(box["x"] + box["width"] * (0.2 + 0.6 * (i % 20) / 20),
                            box["y"] + box["height"] * (0.25 + 0.5 * (i // 20) / 20))  # fmt: skip
            if tooltip.count() and tooltip.first.is_visible():
                break
        print(f"hover shows the image: {tooltip.count() > 0 and tooltip.first.is_visible()}")
        page.screenshot(path=out / "why-map-hover.png")
        page.get_by_role("tab", name="Label spreading, step by step").click()
        page.get_by_text("Replay label spreading", exact=True).first.click()
        page.get_by_text("of the points reached").first.wait_for(timeout=300_000)
        settled(page)
        handle = page.get_by_role("slider").first
        handle.focus()
        for _ in range(3):  # 0 -> 1 -> 2 -> 5 iterations
            handle.press("ArrowRight")
            settled(page)
        page.get_by_text("After 5 iterations").first.wait_for(timeout=60_000)
        settled(page)
        page.screenshot(path=out / "why-spread.png")
        page.get_by_role("tab", name="Whitened stem").click()
        page.get_by_text("The 12 filters, largest variance first").first.wait_for(timeout=60_000)
        settled(page)
        page.screenshot(path=out / "why-stem.png")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
