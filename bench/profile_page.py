"""Where a watching page spends its CPU: a real headless Chromium page watches a default run, profiled through
the Chrome DevTools Protocol (the sampling `Profiler`, and `Performance.getMetrics` for script, layout and
style time), with Chromium's own CPU seconds from /proc (the browser's processes only) per second of training.

DevTools itself costs: attached (as Playwright is), Chromium reports every WebSocket frame to it, and its CPU
nearly doubles. So the figure a person's browser lives with comes first, from a Chromium started as a person
starts it (no DevTools), opened at the run's address while the run is paused: its CPU from the resume to the
run's end (`watched`, which bench_perf uses too). Subtracting a separate idle Chromium's start-up, as this
bench first did, left part of the page's own load in the figure (0.23-0.27 against 0.14 the same day).

    .venv/bin/python -m bench.profile_page [--top 30] [--epochs 5]

Prints Chromium's CPU per second of training without DevTools, then with them: the functions with the most self
time (file:line), the page's metrics over the run, and each Chromium process's CPU.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench.bench_sharing import CHROMIUM_ARGS, FINAL, chromium_of, wait_for
from bench.common import descendants, serve

METRICS = ("ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "TaskDuration", "LayoutCount",
           "RecalcStyleCount")
TICK = os.sysconf("SC_CLK_TCK")
LOAD_SECONDS = 4.0  # Chromium's start and the page's load, while the run is paused


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of `pids` so far (from /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total / TICK


def kind(pid: int) -> str:
    """A Chromium process's --type (renderer, gpu-process, utility, zygote), or 'browser' for the main one."""
    try:
        # Chromium rewrites its children's argv into one space-separated string
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ").split()
    except OSError:
        return "gone"
    return next((a.split("=", 1)[1] for a in args if a.startswith("--type=")), "browser")


def watched(client: httpx.Client, base: str, config: dict[str, Any] | None = None,
            ) -> tuple[dict[str, Any], float, float]:
    """A run of `config` (default: the default run) watched by a Chromium page with no DevTools: (the ended run,
    Chromium's CPU seconds and the run's training seconds, both from the resume to the end). The run is paused
    while Chromium starts and loads the page (LOAD_SECONDS), which is no part of watching."""
    run = client.post("/api/runs", json=config or {}).json()
    token = {"Authorization": f"Bearer {run['token']}"}
    client.post(f"/api/runs/{run['id']}/pause", headers=token)
    browser = chromium_of(base, f"/?run={run['id']}")
    pids: set[int] = set()
    try:
        began = time.monotonic()
        while time.monotonic() - began < LOAD_SECONDS:
            pids |= set(descendants(browser.pid))
            time.sleep(0.2)
        before = cpu_seconds(sorted(pids))
        resumed = client.post(f"/api/runs/{run['id']}/resume", headers=token).json()
        while (now := client.get(f"/api/runs/{run['id']}").json())["status"] not in FINAL:
            pids |= set(descendants(browser.pid))
            time.sleep(0.2)
        time.sleep(0.5)  # the last frames drawn
        pids |= set(descendants(browser.pid))
        spent = cpu_seconds(sorted(pids)) - before
    finally:
        browser.terminate()
        browser.wait(10)
    return now, spent, float(now["elapsed"]) - float(resumed.get("elapsed", 0.0))


def self_times(profile: dict[str, Any]) -> Counter[str]:
    """Milliseconds of self time per function (name file:line) in a CDP CPU profile."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    deltas = profile.get("timeDeltas", [])
    spent: Counter[str] = Counter()
    for node_id, dt in zip(profile.get("samples", []), deltas, strict=False):
        frame = nodes[node_id]["callFrame"]
        url = frame["url"].rsplit("/", 1)[-1]
        spent[f"{frame['functionName'] or '(anonymous)'} {url}:{frame['lineNumber'] + 1}"] += dt / 1000
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--no-slow-start", action="store_true", help="the page's slow start turned off")
    parser.add_argument("--hide", default="", help="a CSS selector of panels hidden (display: none), to find "
                                                    "what costs")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    proc, base = serve()
    try:
        with sync_playwright() as p, httpx.Client(base_url=f"http://{base}", timeout=60) as client:
            _, plain, plain_elapsed = watched(client, base, {"epochs": args.epochs})
            browser = p.chromium.launch(executable_path=os.environ.get("FILTERSCOPE_CHROMIUM", "/usr/bin/chromium"),
                                        args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"http://{base}/")
            page.wait_for_function("() => window.filterscope !== undefined")
            if args.hide:
                page.add_style_tag(content=f"{args.hide} {{ display: none !important; }}")
            if args.no_slow_start:
                page.evaluate("() => window.filterscope.store.setSlowStart(false)")
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            cdp.send("Profiler.enable")
            cdp.send("Profiler.setSamplingInterval", {"interval": 200})
            chromium = [pid for pid in descendants(os.getpid()) if pid != os.getpid() and pid != proc.pid
                        and "chrom" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
            before = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            cpu0 = cpu_seconds(chromium)
            by_kind0 = {pid: cpu_seconds([pid]) for pid in chromium}
            cdp.send("Profiler.start")
            run = client.post("/api/runs", json={"epochs": args.epochs}).json()
            page.evaluate("id => window.filterscope.session.attach(id)", run["id"])
            run = wait_for(client, run["id"], FINAL)
            time.sleep(0.5)  # the last frames drawn
            profile = cdp.send("Profiler.stop")["profile"]
            cpu = cpu_seconds(chromium) - cpu0
            kinds: Counter[str] = Counter()
            for pid, was in by_kind0.items():
                kinds[kind(pid)] += cpu_seconds([pid]) - was
            after = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    elapsed = run["elapsed"]
    print(f"no DevTools: Chromium CPU {plain:.2f} s over {plain_elapsed:.1f} s of training = "  # noqa: T201
          f"{plain / plain_elapsed:.3f} core per second of training (from the resume, once the page had loaded)")
    spent = self_times(profile)
    total = sum(spent.values())
    print(f"with DevTools: {elapsed:.1f} s of training; Chromium CPU {cpu:.2f} s = {cpu / elapsed:.3f} core per "  # noqa: T201
          f"second of training; profiled {total / 1000:.2f} s of the page's main thread")
    print("  by process: " + ", ".join(f"{k} {v:.2f} s" for k, v in kinds.most_common()))  # noqa: T201
    print("  " + ", ".join(f"{m} {after.get(m, 0) - before.get(m, 0):.3f}" for m in METRICS))  # noqa: T201
    for name, ms in spent.most_common(args.top):
        print(f"  {ms:8.1f} ms  {100 * ms / total:5.1f} %  {name}")  # noqa: T201


if __name__ == "__main__":
    main()
