"""The performance issue's figures in one run, side by side: what watching costs training, what the page costs
the CPU, what filterscope's own work costs the training thread, how fast a server with 200 runs starts, and
how many bytes a run keeps.

Each round, in rotating order, on one server (`tiny`/`mnist`, the default run):

- unwatched: the run trains with nobody watching;
- watched: a Chromium started as a person starts one (headless, no DevTools attached: Playwright's DevTools
  connection is told every WebSocket frame and nearly doubles Chromium's CPU) opens the run's page. The run is
  paused while Chromium starts and loads the page (4 s, no part of watching), then resumed; Chromium's CPU
  seconds (/proc, its processes only) are counted from the resume to the run's end and divided by the run's
  training seconds over the same span;
- start-up: a fresh `filterscope serve` on an empty store and on a store of 200 copies of a finished run
  (`bench_startup`): its first answer and its `/healthz` "ok";
- drawn: the run watched by a page in Playwright's Chromium, which keeps, for each live snapshot it draws,
  the milliseconds from the server encoding it (the frame's `sent_at`) to the page having drawn it
  (`window.filterscopePerf.latencies`, same clock): their median and 95th percentile over the run.

Every run also gives its own-work share (`instrument_seconds / elapsed`, the engine's measure of the training
thread's time spent on filterscope rather than on learning) and its bytes on disk (the run answer's `bytes`).
Ratios are per round (watched over the same round's unwatched), then the median: this machine is shared
and noisy.

    .venv/bin/python -m bench.bench_perf [--rounds 4] [--runs 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench.bench_sharing import CHROMIUM_ARGS, FINAL
from bench.bench_startup import store_of, timed_start
from bench.bench_upload import wait_for
from bench.common import serve, trained
from bench.profile_page import LOAD_SECONDS, watched
from filterscope.training.config import TrainConfig
from filterscope.training.datasets import get_dataset

# The goals: (figure, goal, True when the figure must be at least the goal).
GOALS = {"watched / unwatched": (0.95, True), "Chromium core per second of training": (0.1, False),
         "own work, % of the training thread": (1.5, False), "healthy with 200 runs, s": (2.0, False),
         "MB on disk per default run": (3.0, False), "snapshot encoded to drawn, p95 ms": (20.0, False)}


def unwatched(client: httpx.Client) -> dict[str, Any]:
    run = client.post("/api/runs", json={}).json()
    return wait_for(client, run["id"], FINAL)


def speed(run: dict[str, Any], cfg: TrainConfig) -> float:
    """Samples per second of training."""
    return float(get_dataset(cfg.dataset).info.train_count * cfg.epochs / float(run["elapsed"]))


def share(run: dict[str, Any]) -> float:
    return 100 * float(run["instrument_seconds"]) / float(run["elapsed"])


def spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def drawn(client: httpx.Client, base: str) -> list[float]:
    """The default run watched by a page in Playwright's Chromium: ms from encoding to drawn, per live snapshot
    drawn."""
    from playwright.sync_api import sync_playwright

    run = client.post("/api/runs", json={}).json()
    token = {"Authorization": f"Bearer {run['token']}"}
    client.post(f"/api/runs/{run['id']}/pause", headers=token)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("FILTERSCOPE_CHROMIUM", "/usr/bin/chromium"),
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"http://{base}/?run={run['id']}")
            page.wait_for_function("() => window.filterscopePerf !== undefined")
            time.sleep(LOAD_SECONDS)
            client.post(f"/api/runs/{run['id']}/resume", headers=token)
            wait_for(client, run["id"], FINAL)
            time.sleep(1.0)  # the last frames drawn
            return [float(ms) for ms in page.evaluate("() => window.filterscopePerf.latencies")]
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=200, help="stored runs for the start-up figure")
    args = parser.parse_args()
    cfg = TrainConfig()
    data_dir = Path(tempfile.mkdtemp(prefix="filterscope-bench-"))
    server, base = serve({"FILTERSCOPE_DATA_DIR": str(data_dir), "FILTERSCOPE_PRETRAINED": "0"})
    stores: dict[str, tuple[Path, int]] = {}
    rows: dict[str, list[float]] = {k: [] for k in (
        "unwatched samples/s", "watched samples/s", "watched / unwatched", "Chromium core per second of training",
        "own work unwatched, %", "own work watched, %", "MB on disk per default run", "first answer, empty, s",
        "healthy, empty, s", f"first answer, {args.runs} runs, s", f"healthy, {args.runs} runs, s",
        "snapshot encoded to drawn, p50 ms", "snapshot encoded to drawn, p95 ms")}
    try:
        with httpx.Client(base_url=f"http://{base}", timeout=60) as client:
            for r in range(args.rounds):
                ways = ["unwatched", "watched", "start"]
                ways = ways[r % 3:] + ways[:r % 3]
                seen: dict[str, Any] = {}
                for way in ways:
                    if way == "unwatched":
                        seen["plain"] = unwatched(client)
                    elif way == "watched":
                        seen["watched"], cpu, trained_s = watched(client, base)
                        rows["Chromium core per second of training"].append(cpu / trained_s)
                    else:
                        if not stores:  # the stored runs are copies of one default run
                            source = trained()
                            stores = {"empty": (Path(tempfile.mkdtemp(prefix="filterscope-bench-")), 0),
                                      f"{args.runs} runs": (store_of(source, args.runs), args.runs)}
                            shutil.rmtree(source.parent, ignore_errors=True)
                        for label, (where, count) in (stores.items() if r % 2 == 0 else reversed(stores.items())):
                            first, ready, _, _ = timed_start(where, count)
                            rows[f"first answer, {label}, s"].append(first)
                            rows[f"healthy, {label}, s"].append(ready)
                plain, seen_run = seen["plain"], seen["watched"]
                rows["unwatched samples/s"].append(speed(plain, cfg))
                rows["watched samples/s"].append(speed(seen_run, cfg))
                rows["watched / unwatched"].append(speed(seen_run, cfg) / speed(plain, cfg))
                rows["own work unwatched, %"].append(share(plain))
                rows["own work watched, %"].append(share(seen_run))
                rows["MB on disk per default run"].append(plain["bytes"] / 1e6)
                print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3g}" for k, v in rows.items() if v), flush=True)
            for _ in range(2):  # after the rounds: Playwright's DevTools connection costs Chromium CPU
                latencies = sorted(drawn(client, base))
                rows["snapshot encoded to drawn, p50 ms"].append(latencies[len(latencies) // 2])
                rows["snapshot encoded to drawn, p95 ms"].append(latencies[int(0.95 * (len(latencies) - 1))])
                p50, p95 = rows["snapshot encoded to drawn, p50 ms"][-1], rows["snapshot encoded to drawn, p95 ms"][-1]
                print(f"drawn: {len(latencies)} live snapshots, p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)
        for where, _ in stores.values():
            shutil.rmtree(where, ignore_errors=True)
    print(f"\n{args.rounds} rounds, the default run ({cfg.model}/{cfg.dataset}, {cfg.epochs} epochs); "
          "median (range) of per-round figures")
    for name, values in rows.items():
        print(f"  {name:<40} {spread(values, 1 if 'samples' in name else 3)}")
    figures = {"watched / unwatched": rows["watched / unwatched"],
               "Chromium core per second of training": rows["Chromium core per second of training"],
               "own work, % of the training thread": rows["own work unwatched, %"] + rows["own work watched, %"],
               "healthy with 200 runs, s": rows[f"healthy, {args.runs} runs, s"],
               "MB on disk per default run": rows["MB on disk per default run"],
               "snapshot encoded to drawn, p95 ms": rows["snapshot encoded to drawn, p95 ms"]}
    print("\ngoals")
    for name, (goal, at_least) in GOALS.items():
        value = statistics.median(figures[name])
        met = value >= goal if at_least else value <= goal
        print(f"  {name:<40} {value:.3f}  goal {'>=' if at_least else '<='} {goal:g}: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
