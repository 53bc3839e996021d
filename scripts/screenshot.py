"""Take the README's screenshot from a running server: start a default run, let it finish, shoot the page with
the filters at step 0 beside the filters at the end.

    .venv/bin/filterscope serve &           # in one shell
    .venv/bin/python scripts/screenshot.py  # writes docs/screenshot.png

Uses Debian's Chromium (/usr/bin/chromium, or $FILTERSCOPE_CHROMIUM) through Playwright.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--size", default="1280x800")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("FILTERSCOPE_CHROMIUM", "/usr/bin/chromium"),
                                     args=ARGS)
        page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
        page.goto(args.url)
        page.get_by_test_id("start").click()
        page.wait_for_function("() => window.filterscope.store.run?.status === 'finished'", timeout=120_000,
                               polling=500)
        page.get_by_test_id("show-both").click()
        page.wait_for_timeout(500)  # let the last frame draw
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
