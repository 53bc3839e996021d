"""Take the README's fine-tuning screenshot from a running server on a fresh data directory (which holds the
shipped pretrained run): fine-tune it onto mnist with conv1 frozen, then shoot the run's origin, its filters
and the chart of how far each layer moved from the pretrained start.

    FILTERSCOPE_DATA_DIR=$(mktemp -d) .venv/bin/filterscope serve &   # in one shell
    .venv/bin/python scripts/screenshot_finetune.py                    # writes docs/screenshot-finetune.png
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update"]
SETTLED = "() => window.filterscope.store.status === 'finished' && window.filterscope.store.slow === null"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot-finetune.png")
    args = parser.parse_args()
    with urllib.request.urlopen(f"{args.url}/api/runs") as res:  # noqa: S310 (the server given)
        source = next(r["id"] for r in json.load(res) if r["config"]["dataset"] == "fashion-mnist")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("FILTERSCOPE_CHROMIUM", "/usr/bin/chromium"),
                                     args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        page.goto(f"{args.url}/?run={source}")
        page.wait_for_function(SETTLED)
        page.get_by_test_id("finetune-epochs").fill("3")
        page.get_by_test_id("finetune-freeze-conv1").check()
        page.get_by_test_id("finetune-start").click()
        page.wait_for_url(lambda url: f"run={source}" not in url)
        page.wait_for_function(SETTLED, timeout=120_000, polling=500)
        page.wait_for_timeout(800)  # the charts' last draw
        # The filters (conv1 frozen, conv2 moved) beside the loss, the step sizes and how far each layer moved.
        page.evaluate("window.scrollTo(0, 0)")  # boxes in page coordinates, as the clip takes them
        filters = page.get_by_test_id("filters-panel").bounding_box()
        moved = page.get_by_test_id("moved-summary").bounding_box()
        assert filters is not None and moved is not None
        page.screenshot(path=str(args.out), full_page=True, clip={
            "x": filters["x"] - 8, "y": filters["y"] - 8, "width": 1280 - filters["x"],
            "height": moved["y"] + moved["height"] - filters["y"] + 24})
        browser.close()
    print(f"wrote {args.out}")  # noqa: T201


if __name__ == "__main__":
    main()
