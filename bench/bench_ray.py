"""Runs on Ray against runs in a thread, side by side in one sitting (runs/cluster.py).

1. A default run (`tiny` on mnist, 5 epochs, one training thread) on a server with `--ray local` against the
   same run on a server training in its own thread, alternating rounds: the training speed ratio (steps a
   second of training; goal at least 0.95) and the wall clock from POST to finished.
2. From Start to the first snapshot on a page: POST /api/runs, then the WebSocket's first binary frame.
3. A sweep of 8 short runs on a two-node local Ray cluster (two raylets of one CPU each, on loopback) against
   the same sweep on a one-node cluster of one CPU: wall clock from POST /api/sweeps to the last finished.

    .venv/bin/python -m bench.bench_ray [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import httpx2 as httpx
from websockets.sync.client import connect

from bench.common import serve

RUN = {"epochs": 5}  # the defaults otherwise: tiny on mnist, 8,000 images
SWEEP = {"base": {"epochs": 1, "train_subset": 2000}, "vary": {"seed": list(range(8))}}
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
ONE_THREAD = {"FILTERSCOPE_TRAINING_THREADS": "1", "FILTERSCOPE_PRETRAINED": "0"}


def finished(base: str, run_id: str) -> dict[str, Any]:
    while True:
        run = httpx.get(f"http://{base}/api/runs/{run_id}", timeout=30).json()
        if run["status"] in ("finished", "failed", "diverged", "stopped", "interrupted"):
            return dict(run)
        time.sleep(0.1)


def one_run(base: str) -> tuple[float, float, float]:
    """(steps a second of training, seconds POST to finished, seconds POST to the first frame on a socket)."""
    began = time.perf_counter()
    run = httpx.post(f"http://{base}/api/runs", json=RUN, timeout=120).json()
    with connect(f"ws://{base}/ws/runs/{run['id']}", max_size=None) as ws:
        while not isinstance(ws.recv(timeout=120), bytes):
            pass
        first = time.perf_counter() - began
    done = finished(base, run["id"])
    return done["step"] / done["elapsed"], time.perf_counter() - began, first


def sweep_seconds(base: str) -> float:
    began = time.perf_counter()
    sweep = httpx.post(f"http://{base}/api/sweeps", json=SWEEP, timeout=120).json()
    for run in sweep["runs"]:
        finished(base, run["id"])
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(LOOPBACK)
    thread_server, thread_base = serve(ONE_THREAD)
    ray_server, ray_base = serve(ONE_THREAD, ("--ray", "local"))
    rows: dict[str, list[tuple[float, float, float]]] = {"thread": [], "ray": []}
    try:
        one_run(thread_base), one_run(ray_base)  # warm: first imports, the data set, Ray's worker pool
        for _ in range(args.rounds):
            rows["thread"].append(one_run(thread_base))
            rows["ray"].append(one_run(ray_base))
    finally:
        for proc in (thread_server, ray_server):
            proc.terminate()
            proc.wait(60)
    speed = {k: statistics.median(r[0] for r in v) for k, v in rows.items()}
    print(f"default run ({args.rounds} rounds, medians): thread {speed['thread']:.0f} steps/s, ray actor "  # noqa: T201
          f"{speed['ray']:.0f} steps/s: ratio {speed['ray'] / speed['thread']:.3f} (goal >= 0.95); wall clock "
          f"{statistics.median(r[1] for r in rows['thread']):.1f} s against "
          f"{statistics.median(r[1] for r in rows['ray']):.1f} s")
    print(f"Start to the first snapshot on a socket: thread {statistics.median(r[2] for r in rows['thread']):.2f} s, "  # noqa: T201
          f"ray actor {statistics.median(r[2] for r in rows['ray']):.2f} s")

    from ray.cluster_utils import Cluster

    walls = {}
    for nodes in (1, 2):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                                "include_dashboard": False})
        try:
            for _ in range(nodes - 1):
                cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
            cluster.wait_for_nodes()
            server, base = serve(ONE_THREAD, ("--ray", cluster.address))
            try:
                walls[nodes] = sweep_seconds(base)
            finally:
                server.terminate()
                server.wait(60)
        finally:
            cluster.shutdown()
    print(f"sweep of 8 (1 epoch, 2,000 images each): one node of 1 CPU {walls[1]:.1f} s, two nodes of 1 CPU "  # noqa: T201
          f"{walls[2]:.1f} s: {walls[1] / walls[2]:.2f}x")


if __name__ == "__main__":
    main()
