"""Take the README's screenshot of the kernel inspector with the convolution worked: a `tiny` run on mnist
trained for one epoch, conv1's filter #2 opened at step 10 (the dense start, where ΔW spans one batch), its
feature map's brightest pixel clicked, and the worked update and convolution shot.

    .venv/bin/filterscope serve &                        # in one shell
    .venv/bin/python scripts/screenshot_convolution.py   # writes docs/screenshot-convolution.png

Uses Debian's Chromium (/usr/bin/chromium, or $FILTERSCOPE_CHROMIUM) through Playwright.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update"]
RUN = {"dataset": "mnist", "model": "tiny", "epochs": 1, "batch_size": 64, "snapshot_every": 10}


def call(method: str, url: str, body: dict[str, object] | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer: dict[str, object] = json.loads(resp.read())
        return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot-convolution.png")
    parser.add_argument("--run", help="an existing run's id (default: train a new one)")
    parser.add_argument("--step", type=int, default=10)
    parser.add_argument("--filter", type=int, default=2)
    args = parser.parse_args()
    run_id = args.run or str(call("POST", f"{args.url}/api/runs", RUN)["id"])
    while call("GET", f"{args.url}/api/runs/{run_id}")["status"] not in ("finished", "stopped"):
        time.sleep(0.5)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("FILTERSCOPE_CHROMIUM", "/usr/bin/chromium"),
                                     args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        seq = next(r["seq"] for r in call("GET", f"{args.url}/api/runs/{run_id}/snapshots")  # type: ignore[attr-defined]
                   if r["step"] == args.step)
        brightest = call("GET", f"{args.url}/api/runs/{run_id}/snapshots/{seq}/convolution/conv1/{args.filter}")
        y, x = brightest["pixel"]["y"], brightest["pixel"]["x"]  # type: ignore[index]
        page.goto(f"{args.url}/?run={run_id}&step={args.step}&filter=conv1.{args.filter}")
        conv_map = page.get_by_test_id("conv-map")
        conv_map.wait_for()
        zoom = conv_map.evaluate("c => c.getBoundingClientRect().width / c.width")
        conv_map.click(position={"x": (x + 0.5) * zoom, "y": (y + 0.5) * zoom})
        page.wait_for_function("p => document.querySelector('[data-testid=kernel-convolution]').textContent"
                               ".includes(p)", arg=f"pixel ({y}, {x})")
        page.get_by_test_id("update-held").wait_for()
        page.wait_for_timeout(300)
        # The worked update and convolution, in page coordinates (a full-page clip is not the viewport's).
        box = page.evaluate("""() => {
            const at = (id) => document.querySelector(`[data-testid=${id}]`).getBoundingClientRect();
            const top = at('kernel-update'), bottom = at('kernel-convolution');
            return {x: top.left - 8, y: top.top + scrollY - 8, width: top.width + 16,
                    height: bottom.bottom - top.top + 16};
        }""")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True, clip=box)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
