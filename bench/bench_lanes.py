"""Fair CPU for images through a model: a viewer's inspect of the latest moment, and the owner's probe uploads
and inspects, while seven other viewers keep asking for old moments that replay training (issue 21: 26.6 s for
the latest moment behind seven of them, on one shared worker).

On a real server in its own process: an ended default run (1,251 steps; an old moment's model is replayed from
the nearest checkpoint, up to 625 steps), and a second run of the owner's training throughout. Seven viewers,
each from its own loopback address (127.0.0.2 to 127.0.0.8), ask in a loop for seven old moments far from any
checkpoint (three before the anchor half way, four before the end: more than the four models a run keeps
built, so each is rebuilt every time), waiting out a 429 for its `Retry-After` as a polite client does. An
eighth viewer (127.0.0.9) asks for the latest moment every half second, and the owner (127.0.0.1, with the
runs' control tokens) alternates a probe upload to the live run and an inspect of the ended run's latest
moment. First `--quiet` seconds with nobody asking for old moments, then `--seconds` with the seven.

The machine is shared with other work, so one run's figures are noisy: compare the busy figures with the quiet
ones of the same run. Figures only; nothing here passes or fails.

    .venv/bin/python -m bench.bench_lanes [--quiet 15] [--seconds 60]
"""

from __future__ import annotations

import argparse
import io
import threading
import time
from typing import Any

import httpx2 as httpx
from PIL import Image

from bench.common import pct, serve

FINAL = ("finished", "failed", "diverged", "stopped")
GOAL = 2.0  # issue 21: a viewer's inspect of the latest moment, p95 under this many seconds
OLD_VIEWERS = 7


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (28, 28), 0).save(buf, format="PNG")
    return buf.getvalue()


def wait_for(client: httpx.Client, run_id: str, statuses: tuple[str, ...], steps: int = 0) -> dict[str, Any]:
    while True:
        run: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in statuses or (steps and run["step"] >= steps):
            return run
        time.sleep(0.5)


class Asker:
    """One client asking in a loop while `on` is set: the seconds each answer took, and the 429s."""

    def __init__(self, base: str, address: str, ask: list[tuple[str, dict[str, str]]], pause: float) -> None:
        self.base, self.address, self.ask, self.pause = base, address, ask, pause
        self.on, self.stop = threading.Event(), threading.Event()
        self.seconds: dict[str, list[float]] = {}
        self.refused = 0
        self.failed: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        transport = httpx.HTTPTransport(local_address=self.address)
        with httpx.Client(base_url=f"http://{self.base}", timeout=300, transport=transport) as client:
            i = 0
            while not self.stop.is_set():
                if not self.on.wait(0.1):
                    continue
                path, headers = self.ask[i % len(self.ask)]
                started = time.perf_counter()
                res = client.post(path, files={"file": ("a.png", png(), "image/png")}, headers=headers)
                took = time.perf_counter() - started
                if res.status_code == 429:
                    self.refused += 1
                    self.stop.wait(float(res.headers.get("retry-after", "1")))
                    continue
                if res.status_code != 200:
                    self.failed.append(f"{res.status_code} {res.text[:80]}")
                else:
                    self.seconds.setdefault(path.split("?")[0].rsplit("/", 1)[1], []).append(took)
                i += 1
                self.stop.wait(self.pause)

    def reset(self) -> None:
        self.seconds, self.refused, self.failed = {}, 0, []

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)


def summary(seconds: list[float]) -> str:
    if not seconds:
        return "none answered"
    return f"p50 {pct(seconds, 0.5):.2f} s, p95 {pct(seconds, 0.95):.2f} s, max {max(seconds):.2f} s ({len(seconds)})"


def old_moments(snaps: list[dict[str, Any]], total_steps: int) -> list[int]:
    """Snapshots at least 200 steps after a checkpoint (step 0, half way) and before the next, in an order that
    alternates between the halves; none of the newest eight, which a finished run keeps in memory."""
    half = total_steps // 2
    first = [s["seq"] for s in snaps if 200 <= s["step"] < half]
    second = [s["seq"] for s in snaps[:-8] if half + 200 <= s["step"] < total_steps]
    return [seq for pair in zip(first, second, strict=False) for seq in pair]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", type=float, default=15.0, help="seconds with no old moments asked (default 15)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds with seven viewers asking for old "
                                                                     "moments (default 60)")
    args = parser.parse_args()
    proc, base = serve()
    askers: list[Asker] = []
    try:
        with httpx.Client(base_url=f"http://{base}", timeout=60) as client:
            made = client.post("/api/runs", json={}).json()  # the default run
            ended = {**wait_for(client, made["id"], FINAL), "token": made["token"]}
            live = client.post("/api/runs", json={"epochs": 100}).json()  # the owner's, training throughout
            wait_for(client, live["id"], FINAL, steps=50)
            snaps = client.get(f"/api/runs/{ended['id']}/snapshots").json()
            old = old_moments(snaps, ended["step"])
            steps = [s["step"] for s in snaps if s["seq"] in old]
            print(f"ended run: {ended['step']} steps, {len(snaps)} snapshots; {len(old)} old moments asked (steps "
                  f"{min(steps)}-{max(steps)}, each 200-600 steps from a checkpoint)", flush=True)
        inspect = f"/api/runs/{ended['id']}/inspect"
        mine = {"Authorization": f"Bearer {ended['token']}"}
        owner = Asker(base, "127.0.0.1", [(f"/api/runs/{live['id']}/probe", {"Authorization":
                                                                             f"Bearer {live['token']}"}),
                                          (inspect, mine)], 0.5)
        latest = Asker(base, "127.0.0.9", [(inspect, {})], 0.5)
        # Each viewer steps through the old moments from its own place, so that what it asks is rarely one of
        # the four models the run keeps built: nearly every answer is a rebuild.
        viewers = [Asker(base, f"127.0.0.{i + 2}", [(f"{inspect}?snapshot={seq}", {})
                                                    for seq in old[i * 3:] + old[:i * 3]], 0.0)
                   for i in range(OLD_VIEWERS)]
        askers = [owner, latest, *viewers]
        for phase, seconds, asking in (("quiet", args.quiet, [owner, latest]), ("busy", args.seconds, askers)):
            for a in askers:
                a.reset()
            for a in asking:
                a.on.set()
            time.sleep(seconds)
            for a in askers:
                a.on.clear()
            time.sleep(1)
            print(f"{phase} ({seconds:g} s{', seven viewers asking for old moments' if phase == 'busy' else ''}):",
                  flush=True)
            verdict = "meets" if latest.seconds.get("inspect") and pct(latest.seconds["inspect"], 0.95) < GOAL \
                else "MISSES"
            print(f"  a viewer, the latest moment: {summary(latest.seconds.get('inspect', []))}; {latest.refused} "
                  f"answered 429{f'; {verdict} goal p95 < {GOAL:g} s' if phase == 'busy' else ''}")
            print(f"  the owner's probe upload: {summary(owner.seconds.get('probe', []))}; inspect: "
                  f"{summary(owner.seconds.get('inspect', []))}; {owner.refused} answered 429")
            if phase == "busy":
                rebuilt = [s for v in viewers for s in v.seconds.get("inspect", [])]
                served = sorted(len(v.seconds.get("inspect", [])) for v in viewers)
                print(f"  the seven viewers' old moments: {summary(rebuilt)}; {sum(v.refused for v in viewers)} "
                      f"answered 429; answers per viewer {', '.join(map(str, served))}")
            failed = [f for a in askers for f in a.failed]
            if failed:
                print(f"  {len(failed)} failed: {', '.join(sorted(set(failed))[:3])}")
    finally:
        for a in askers:
            a.close()
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
