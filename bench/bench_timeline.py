"""Time travel in a real Chromium page: seeking to any snapshot and drawing every panel, and replaying.

For a finished default `tiny` run and a `classic` run, on a real server:

- seek: from `session.seek(seq)` to the moment's frame being in the store (fetched and decoded, or from the
  page's cache: for an ended run the page fetches the frames in the background once it opens), plus the
  time the views take to draw it (every panel: filters, probe and feature maps, the loss chart's mark), for
  random snapshots half a second after the page opened, then random snapshots again;
- replay at 30 moments a second from step 0 to the end: moments shown, moments skipped, and the rate.

What is not counted is the wait for the screen's next frame (up to 16.7 ms at 60 Hz), which no page controls.

    .venv/bin/python -m bench.bench_timeline [--seeks 60]
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import httpx2 as httpx
from playwright.sync_api import sync_playwright

from bench.common import pct, serve

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]

SEEK = """async (seqs) => {
    const { store, session } = window.filterscope;
    const out = [];
    for (const seq of seqs) {
        const draws = window.filterscopePerf.snapshotDraws.length;
        const t0 = performance.now();
        const shown = new Promise((resolve) => {
            if (store.snapshot?.seq === seq) return resolve();
            const off = store.on('snapshot', () => { if (store.snapshot?.seq === seq) { off(); resolve(); } });
        });
        session.seek(seq);
        await shown;
        const ready = performance.now() - t0;
        await new Promise((resolve) => {
            const drawn = () => window.filterscopePerf.snapshotDraws.length > draws;
            const check = () => (drawn() ? resolve() : setTimeout(check, 1));
            check();
        });
        const draw = window.filterscopePerf.snapshotDraws.at(-1);
        out.push({ ready, draw, total: ready + draw });
    }
    return out;
}"""

REPLAY = """async () => {
    const { store, views } = window.filterscope;
    const seen = [];
    const off = store.on('snapshot', () => seen.push(store.snapshot.seq));
    views.timeline.speed.value = 'fps30';
    views.timeline.seekIndex(0, true);
    await new Promise((r) => setTimeout(r, 200));
    seen.length = 0;
    const t0 = performance.now();
    views.timeline.play();
    await new Promise((resolve) => {
        const check = () => (store.playing ? setTimeout(check, 20) : resolve());
        check();
    });
    off();
    const seconds = (performance.now() - t0) / 1000;
    const order = store.index.map((r) => r.seq);
    const first = order.indexOf(seen[0]);
    const skipped = order.slice(first).filter((s) => !seen.includes(s)).length;
    return { shown: seen.length, skipped, seconds, total: order.length };
}"""


def finished(base: str, config: dict[str, Any]) -> dict[str, Any]:
    run = httpx.post(f"http://{base}/api/runs", json=config, timeout=60).json()
    while (run := httpx.get(f"http://{base}/api/runs/{run['id']}", timeout=60).json())["status"] != "finished":
        time.sleep(0.5)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeks", type=int, default=60)
    args = parser.parse_args()
    server, base = serve()
    try:
        runs = {"tiny": finished(base, {}), "classic": finished(base, {"model": "classic", "epochs": 2})}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for name, run in runs.items():
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"http://{base}/?run={run['id']}")
                page.wait_for_function("() => window.filterscope.store.index.length > 10 "
                                       "&& window.filterscope.store.snapshot !== null")
                page.wait_for_timeout(500)
                seqs = [r["seq"] for r in page.evaluate("window.filterscope.store.index")]
                random.seed(1)
                cold = random.sample(seqs, min(args.seeks, len(seqs)))
                first = page.evaluate(SEEK, cold)
                again = page.evaluate(SEEK, random.choices(cold, k=args.seeks))
                for label, rows in (("first time", first), ("again", again)):
                    total = [r["total"] for r in rows]
                    draw = [r["draw"] for r in rows]
                    print(f"{name:<8} seek ({label}) to drawn p50 {pct(total, 0.5):5.1f} ms, "
                          f"p95 {pct(total, 0.95):5.1f} ms (drawing alone p95 {pct(draw, 0.95):.1f} ms; "
                          f"{len(rows)} seeks of {len(seqs)} snapshots)")
                page.close()
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"http://{base}/?run={run['id']}")  # a fresh page: nothing cached
                page.wait_for_function("() => window.filterscope.store.index.length > 10")
                replay = page.evaluate(REPLAY)
                rate = replay["shown"] / replay["seconds"]
                print(f"{name:<8} replay at 30/s: {replay['shown']} of {replay['total']} moments shown, "
                      f"{replay['skipped']} skipped, {rate:.1f} moments/s over {replay['seconds']:.1f} s")
                page.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
