"""How late a page sees a run another process trains: `filterscope train` beside a real server.

The producer encodes each snapshot (its header's `sent_at`, Unix time) and commits it to the data
directory's run log; the server's follower notices the commit (SQLite's data_version, looked at ten
times a second), reads the rows and publishes them; a WebSocket client here receives them. The figure is receipt
minus `sent_at`, per frame, for a run the server follows, beside the same for a run the server trains
itself (published from its own commit), and for a person's own script under `filterscope.watch`
(examples/watch_resnet.py, one epoch), all on the same machine and clock.

    .venv/bin/python -m bench.bench_follow [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx
import websockets

from bench.common import FILTERSCOPE, ROOT, pct, serve
from filterscope.streaming.codec import decode_frame

CONFIG = {"epochs": 1, "train_subset": 2000, "snapshot_every": 5}


async def latencies(base: str, run_id: str) -> list[float]:
    """Receipt minus encoding time of every live frame of the run, until it ends."""
    out: list[float] = []
    async with websockets.connect(f"ws://{base}/ws/runs/{run_id}", max_size=None) as ws:
        async for message in ws:
            now = time.time()
            if isinstance(message, bytes):
                header, _ = decode_frame(message)
                out.append(now - header["sent_at"])
            elif json.loads(message).get("status") in ("finished", "failed", "stopped", "diverged"):
                return out[2:]  # the backlog's first and latest came from disk, not live
    return out[2:]


def produced(base: str, command: list[str], marker: str, env: dict[str, str]) -> list[float]:
    """The latencies of the run another process makes with `command`, which prints `marker` and the run's id
    on its first line."""
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
    assert proc.stdout is not None
    run_id = proc.stdout.readline().split(marker)[1].split()[0]
    while httpx.get(f"http://{base}/api/runs/{run_id}").status_code != 200:
        time.sleep(0.05)
    try:
        return asyncio.run(latencies(base, run_id))
    finally:
        proc.wait(300)
        proc.stdout.close()


def followed(base: str, data_dir: Path) -> list[float]:
    return produced(base, [*FILTERSCOPE, "train", "--data-dir", str(data_dir), "--config", json.dumps(CONFIG)],
                    "training run ", {"FILTERSCOPE_TRAINING_THREADS": "1"})


def watched(base: str, data_dir: Path) -> list[float]:
    """The same for a person's own script under filterscope.watch (examples/watch_resnet.py, one epoch)."""
    return produced(base, [sys.executable, "examples/watch_resnet.py", "--epochs", "1", "--data-dir", str(data_dir)],
                    "recording run ", {"OMP_NUM_THREADS": "1"})


def own(base: str) -> list[float]:
    run = httpx.post(f"http://{base}/api/runs", json=CONFIG).json()
    return asyncio.run(latencies(base, run["id"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="filterscope-bench-follow-"))
    server, base = serve({"FILTERSCOPE_DATA_DIR": str(data_dir), "FILTERSCOPE_TRAINING_THREADS": "1"})
    try:
        figures: dict[str, list[float]] = {"followed (filterscope train)": [], "watched (filterscope.watch)": [],
                                           "the server's own": []}
        for _ in range(args.rounds):  # alternating, so the machine's mood falls on all
            figures["followed (filterscope train)"] += followed(base, data_dir)
            figures["watched (filterscope.watch)"] += watched(base, data_dir)
            figures["the server's own"] += own(base)
        for name, values in figures.items():
            ms = [v * 1000 for v in values]
            print(f"{name:30s} frames {len(ms):4d}  encoded to received p50 {pct(ms, 0.5):6.1f} ms  "  # noqa: T201
                  f"p95 {pct(ms, 0.95):6.1f} ms  max {max(ms):6.1f} ms")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
