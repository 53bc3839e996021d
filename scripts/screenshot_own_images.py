"""Take the README's picture of importing your own images: a folder of three classes of pictures (drawn here:
coloured circles, squares and stripes on grey, the same kind the tests use) imported through the page.

    .venv/bin/filterscope serve &                    # in one shell
    .venv/bin/python scripts/screenshot_own_images.py  # writes docs/screenshot-own-images.png
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update"]
COLOURS = {"circles": (220, 40, 40), "squares": (40, 60, 220), "stripes": (30, 160, 60)}


def folder(root: Path, per_class: int = 12) -> Path:
    """shapes/<class>/<i>.png: a shape of each class's colour, at a size and place drawn from `i`."""
    for cls, colour in COLOURS.items():
        (root / "shapes" / cls).mkdir(parents=True)
        for i in range(per_class):
            rng = np.random.default_rng(i)
            w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))
            im = Image.new("RGB", (w, h), (128, 128, 128))
            draw = ImageDraw.Draw(im)
            x, y = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
            if cls == "circles":
                draw.ellipse((x, y, x + w // 2, y + h // 2), fill=colour)
            elif cls == "squares":
                draw.rectangle((x, y, x + w // 2, y + h // 2), fill=colour)
            else:
                for k in range(0, w, 8):
                    draw.line((k, 0, k, h), fill=colour, width=3)
            im.save(root / "shapes" / cls / f"{i}.png")
    return root / "shapes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot-own-images.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("FILTERSCOPE_CHROMIUM", "/usr/bin/chromium"),
                                     args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        page.goto(args.url)
        page.get_by_test_id("own-folder").set_input_files(folder(Path(tmp)))
        page.get_by_test_id("own-name").fill(f"shapes-{os.getpid() % 1000}")
        page.get_by_test_id("own-import").click()
        page.get_by_test_id("own-summary").wait_for(timeout=60_000)
        page.wait_for_function("() => [...document.querySelectorAll('.own-class img')].every((i) => i.naturalWidth)")
        page.get_by_test_id("own-images").screenshot(path=str(args.out))
        browser.close()
    print(f"wrote {args.out}")  # noqa: T201


if __name__ == "__main__":
    main()
