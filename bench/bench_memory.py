"""What finished runs leave in the server's memory: RSS of a real server after N runs, against fresh.

A finished run drops its engine (model, optimizer, the normalised data set); what stays is its record (the
step history, one model state) and a few rebuilt inspection models. The goal: within 50 MB of a fresh
server after 20 runs. The first run pays one-off costs (torch's kernels, the data set's cache), so the
figure that matters is the growth from the first run to the last.

    .venv/bin/python -m bench.bench_memory [--runs 20]
"""

from __future__ import annotations

import argparse
import time

import httpx2 as httpx

from bench.common import serve

CONFIG = {"epochs": 1, "train_subset": 2000, "snapshot_every": 20}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def finish(base: str) -> None:
    run = httpx.post(f"http://{base}/api/runs", json=CONFIG, timeout=30).json()
    while httpx.get(f"http://{base}/api/runs/{run['id']}", timeout=30).json()["status"] not in (
            "finished", "failed", "diverged", "stopped"):
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    server, base = serve()
    try:
        time.sleep(3)  # the warm-up thread (torch's optimizer module, mnist) has run
        fresh = rss_mb(server.pid)
        finish(base)
        after_one = rss_mb(server.pid)
        for _ in range(args.runs - 1):
            finish(base)
        time.sleep(2)
        after = rss_mb(server.pid)
        print(f"RSS fresh {fresh:.0f} MB, after 1 run {after_one:.0f} MB, after {args.runs} runs {after:.0f} MB: "  # noqa: T201
              f"{after - fresh:+.0f} MB over fresh, {(after - after_one) / max(1, args.runs - 1):+.1f} MB a run "
              f"after the first (goal: within 50 MB of fresh)")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
