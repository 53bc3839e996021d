"""Training speed while the machine is shared: a real browser watching, a busy core, uploads, 100 viewers.

A person's laptop always has a browser drawing the page and other work running, so this is the product's
real speed. For each server thread policy (`auto`, the default, and a fixed count for comparison), each
round trains the default run through a real server five ways, for each policy (one server each, all alive
at once), in rotating order:

- undisturbed: nobody watching, nothing else running (the reference of the round);
- a real headless Chromium page watching the run (Debian's chromium through Playwright), open before the run
  starts, as when a person presses Start;
- the same page in a Chromium with no DevTools attached, as a person's browser is (Playwright's DevTools
  connection is told every WebSocket frame, which nearly doubles Chromium's CPU): it is opened at the run's
  address as the run starts, so its page load falls inside the run;
- another process keeping one core busy;
- two 12-megapixel JPEG uploads in flight all the time (POST /inspect on a finished run);
- 100 WebSocket viewers reading every frame.

Each disturbed run's speed is divided by the same round's undisturbed run: a ratio taken side by side, which
this shared, noisy machine moves far less than the raw samples/s.

    .venv/bin/python -m bench.bench_sharing [--rounds 3] [--policies auto 2] [--only page plain]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2 as httpx
from websockets.asyncio.client import connect

from bench.bench_upload import photo_12mp, wait_for
from bench.common import serve
from filterscope.training.config import TrainConfig
from filterscope.training.datasets import get_dataset

FINAL = ("finished", "failed", "diverged", "stopped")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
GOALS = {"a real Chromium page watching": 0.90, "the page, no DevTools attached": 0.95,
         "one core busy elsewhere": 0.40,
         "two 12 MP uploads in flight": 0.50, "100 WebSocket viewers": 0.80}


SHORT = {"page": "a real Chromium page watching", "plain": "the page, no DevTools attached",
         "core": "one core busy elsewhere", "uploads": "two 12 MP uploads in flight",
         "viewers": "100 WebSocket viewers"}

# A disturbance is a context manager, entered before the run starts (as a page is open, or another program
# busy, before a person presses Start); it yields a callback that is told the new run's id.
Disturbance = Callable[[str], Any]  # (base) -> context manager yielding on_run(run), the POST's answer


def _ignore(run: dict[str, Any]) -> None:
    return None


@contextmanager
def nothing(base: str) -> Iterator[Callable[[str], None]]:
    yield _ignore


class Browser:
    """One headless Chromium for the whole bench; each run gets a fresh page that watches it."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright
        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(
            executable_path=os.environ.get("FILTERSCOPE_CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS)

    @contextmanager
    def watching(self, base: str) -> Iterator[Callable[[str], None]]:
        """The page is open (loaded, idle) before the run starts, and attaches to it as it starts."""
        page = self._browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"http://{base}/")
        page.wait_for_function("() => window.filterscope !== undefined")
        attached: list[str] = []

        def on_run(run: dict[str, Any]) -> None:
            page.evaluate("id => window.filterscope.session.attach(id)", run["id"])
            attached.append(run["id"])

        try:
            yield on_run
            # the page really drew the run: it holds a snapshot of it
            page.wait_for_function("id => window.filterscope.store.snapshot !== null "
                                   "&& window.filterscope.store.runId === id", arg=attached[-1], timeout=10_000)
        finally:
            page.close()

    def close(self) -> None:
        self._browser.close()
        self._pw.stop()


def chromium_of(base: str, path: str) -> subprocess.Popen[bytes]:
    """Chromium as a person starts it, headless, with no DevTools attached, at `path` of the server."""
    return subprocess.Popen([os.environ.get("FILTERSCOPE_CHROMIUM", "/usr/bin/chromium"), *CHROMIUM_ARGS,
                             f"--user-data-dir={tempfile.mkdtemp(prefix='filterscope-chromium-')}",
                             "--window-size=1280,800", f"http://{base}{path}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextmanager
def plain_page(base: str) -> Iterator[Callable[[str], None]]:
    """A Chromium started as a person starts one (no DevTools), opened at the run's address as it starts."""
    opened: list[subprocess.Popen[bytes]] = []
    try:
        def on_run(run: dict[str, Any]) -> None:
            # paused while this Chromium starts and loads the page (its start-up is no part of watching):
            # the run's speed is per second of training, which a pause does not count
            token = {"Authorization": f"Bearer {run['token']}"}
            httpx.post(f"http://{base}/api/runs/{run['id']}/pause", headers=token, timeout=30)
            opened.append(chromium_of(base, f"/?run={run['id']}"))
            time.sleep(4)
            httpx.post(f"http://{base}/api/runs/{run['id']}/resume", headers=token, timeout=30)

        yield on_run
    finally:
        for browser in opened:
            browser.terminate()
            browser.wait(10)


@contextmanager
def busy_core(base: str) -> Iterator[Callable[[str], None]]:
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield _ignore
    finally:
        proc.kill()
        proc.wait()


def uploads(finished_run: str, photo: bytes) -> Disturbance:
    @contextmanager
    def in_flight(base: str) -> Iterator[Callable[[str], None]]:
        stop = threading.Event()
        done: list[int] = []

        def loop() -> None:
            with httpx.Client(base_url=f"http://{base}", timeout=60) as client:
                while not stop.is_set():
                    client.post(f"/api/runs/{finished_run}/inspect", files={"file": ("p.jpg", photo)})
                    done.append(1)

        threads = [threading.Thread(target=loop) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            yield _ignore
        finally:
            stop.set()
            for t in threads:
                t.join()
            assert done, "no upload completed"

    return in_flight


@contextmanager
def viewers(base: str, count: int = 100) -> Iterator[Callable[[str], None]]:
    """100 WebSocket clients that join the run as it starts and read every frame."""
    stop = threading.Event()
    frames: list[int] = []
    threads: list[threading.Thread] = []

    async def one(run_id: str) -> None:
        async with connect(f"ws://{base}/ws/runs/{run_id}", max_size=None) as ws:
            while not stop.is_set():
                try:
                    msg = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                if isinstance(msg, bytes):
                    frames.append(len(msg))

    async def all_of_them(run_id: str) -> None:
        await asyncio.gather(*(one(run_id) for _ in range(count)), return_exceptions=True)

    def on_run(run: dict[str, Any]) -> None:
        threads.append(threading.Thread(target=lambda: asyncio.run(all_of_them(run["id"]))))
        threads[-1].start()

    try:
        yield on_run
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def train(base: str, cfg: TrainConfig, disturb: Disturbance) -> float:
    """With the disturbance on, start a run and let it finish; samples per second of training time."""
    with httpx.Client(base_url=f"http://{base}", timeout=60) as client, disturb(base) as on_run:
        run = client.post("/api/runs", json=cfg.model_dump()).json()
        on_run(run)
        run = wait_for(client, run["id"], FINAL)
    n = get_dataset(cfg.dataset).info.train_count
    return float(n * cfg.epochs / run["elapsed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--policies", nargs="+", default=["auto", "2"],
                        help="FILTERSCOPE_TRAINING_THREADS values to compare (auto = 0)")
    parser.add_argument("--only", nargs="*", default=None, choices=list(SHORT),
                        help="only these disturbances (and the undisturbed reference)")
    args = parser.parse_args()
    cfg = TrainConfig()
    photo = photo_12mp()
    browser = Browser()
    servers = {policy: serve({"FILTERSCOPE_TRAINING_THREADS": "0" if policy == "auto" else policy})
               for policy in args.policies}  # all alive at once, so that every round compares them side by side
    results: dict[str, dict[str, list[float]]] = {}
    try:
        ways: dict[str, dict[str, Disturbance]] = {}
        for policy, (_, base) in servers.items():
            with httpx.Client(base_url=f"http://{base}", timeout=60) as client:
                done = client.post("/api/runs", json={"epochs": 1}).json()["id"]
                wait_for(client, done, ("finished",))
            ways[policy] = {"undisturbed": nothing, "a real Chromium page watching": browser.watching,
                            "the page, no DevTools attached": plain_page,
                            "one core busy elsewhere": busy_core, "two 12 MP uploads in flight": uploads(done, photo),
                            "100 WebSocket viewers": viewers}
            if args.only is not None:
                keep = {SHORT[name] for name in args.only}
                ways[policy] = {k: v for k, v in ways[policy].items() if k == "undisturbed" or k in keep}
            results[policy] = {k: [] for k in ways[policy]}
        jobs = [(policy, name) for name in results[args.policies[0]] for policy in args.policies]
        for r in range(args.rounds):
            # every (policy, disturbance) once a round, in rotating order, so slow spells fall on each in turn
            shift = r * len(args.policies) % len(jobs)
            for policy, name in jobs[shift:] + jobs[:shift]:
                results[policy][name].append(train(servers[policy][1], cfg, ways[policy][name]))
            for policy, speeds in results.items():
                print(f"round {r + 1}, threads {policy}: " + ", ".join(
                    f"{k} {v[-1]:,.0f}" for k, v in speeds.items()) + " samples/s", flush=True)
    finally:
        browser.close()
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)
    print()
    print(f"config: {cfg.model_dump_json()}; {args.rounds} rounds; ratios: median per round (range)")
    for policy, speeds in results.items():
        base_speed = speeds["undisturbed"]
        print(f"threads {policy}: undisturbed {statistics.median(base_speed):,.0f} samples/s "
              f"(range {min(base_speed):,.0f}-{max(base_speed):,.0f})")
        for name, goal in GOALS.items():
            if name not in speeds:
                continue
            ratios = [s / b for s, b in zip(speeds[name], base_speed, strict=True)]
            verdict = "meets" if statistics.median(ratios) >= goal else "MISSES"
            print(f"  {name:<32} ratio {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}); "
                  f"{verdict} goal >= {goal:.2f}")
    if "auto" in results and len(results) > 1:
        for policy, speeds in results.items():
            if policy == "auto":
                continue
            ratios = [a / b for a, b in zip(results["auto"]["undisturbed"], speeds["undisturbed"], strict=True)]
            print(f"undisturbed, auto against {policy} threads: {statistics.median(ratios):.2f} "
                  f"({min(ratios):.2f}-{max(ratios):.2f}); goal >= 0.95")


if __name__ == "__main__":
    main()
