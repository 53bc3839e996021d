"""What keeping every moment costs: training speed with the run store on, bytes per run, reads, start-up.

Per round, side by side (the variants take turns going first; this machine is shared and noisy):

1. a bare PyTorch loop (bench_training.bare_loop);
2. the engine with every event encoded as for the wire, nothing kept (what filterscope cost before the store);
3. the engine feeding a run record that persists everything in a SQLite store (what a run costs now).

Then, on a real server: `GET /api/runs/{id}/snapshots/{seq}` and `GET .../filters/conv2/{i}` latency for a
default run, bytes on disk per default run (`tiny`; `--classic` adds the `classic` preset), and the time from
starting a server whose store holds 200 runs to its answering `GET /api/runs` with all of them.

    .venv/bin/python -m bench.bench_record [--rounds 3] [--classic]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench.bench_startup import store_of, timed_start
from bench.bench_training import bare_loop, engine_here, in_thread
from bench.common import pct, serve
from filterscope.record.record import RunRecord, new_stored_run
from filterscope.record.store import Store
from filterscope.runs.local import log_event
from filterscope.training.config import TrainConfig
from filterscope.training.datasets import get_dataset
from filterscope.training.engine import Engine
from filterscope.training.threads import serial_torch

FINAL = ("finished", "failed", "diverged", "stopped")


def engine_recorded(cfg: TrainConfig, store: Store) -> dict[str, Any]:
    """Train through the engine into a run record persisted by `store`, as the server does (no socket)."""
    engine = Engine(cfg)
    record = RunRecord(new_stored_run(f"b{time.monotonic_ns()}", "-", {"config": cfg.model_dump()}, cfg.lr), store)
    store.add_run(new_stored_run(record.id, "-", record.meta, cfg.lr))
    engine.listen(lambda event: record.on_event(log_event(event)))  # as LocalRun hands them on
    engine.start()
    engine.join()
    store.flush()
    n = get_dataset(cfg.dataset).info.train_count
    return {"samples_per_s": n * cfg.epochs / engine.elapsed, "share": engine.instrument_seconds / engine.elapsed,
            "bytes": record.size, "snapshots": len(record.snapshots)}


def wait_finished(client: httpx.Client, run_id: str) -> dict[str, Any]:
    while (run := client.get(f"/api/runs/{run_id}").json())["status"] not in FINAL:
        time.sleep(0.2)
    return run


def reads(cfg: TrainConfig, classic: bool) -> None:
    """Latency of snapshot and trajectory reads on a real server, and bytes per run."""
    data_dir = tempfile.mkdtemp(prefix="filterscope-bench-")
    server, base = serve({"FILTERSCOPE_DATA_DIR": data_dir})
    try:
        with httpx.Client(base_url=f"http://{base}", timeout=60) as client:
            run = wait_finished(client, client.post("/api/runs", json=cfg.model_dump()).json()["id"])
            seqs = [s["seq"] for s in client.get(f"/api/runs/{run['id']}/snapshots").json()]
            times = []
            for _ in range(400):
                began = time.perf_counter()
                res = client.get(f"/api/runs/{run['id']}/snapshots/{random.choice(seqs)}")
                times.append(time.perf_counter() - began)
                assert res.status_code == 200
            print(f"GET snapshots/{{seq}}    p50 {1000 * pct(times, 0.5):.1f} ms, p95 {1000 * pct(times, 0.95):.1f} ms "
                  f"({len(times)} random reads of {len(seqs)} snapshots; goal p95 < 20 ms)")
            times = []
            for i in range(40):
                began = time.perf_counter()
                res = client.get(f"/api/runs/{run['id']}/filters/conv2/{i % 32}")
                times.append(time.perf_counter() - began)
            print(f"GET filters/conv2/{{i}}  p50 {1000 * pct(times, 0.5):.1f} ms, p95 {1000 * pct(times, 0.95):.1f} ms "
                  f"({len(res.content):,} bytes: one filter at all {len(seqs)} snapshots)")
            print(f"bytes on disk per run   {cfg.model}/{cfg.dataset}, {cfg.epochs} epochs: "
                  f"{run['bytes'] / 1e6:.2f} MB ({len(seqs)} snapshots; goal <= 4 MB)")
            if classic:
                big = TrainConfig(**{**cfg.model_dump(), "model": "classic"})
                run = wait_finished(client, client.post("/api/runs", json=big.model_dump()).json()["id"])
                print(f"bytes on disk per run   classic/{cfg.dataset}, {cfg.epochs} epochs: "
                      f"{run['bytes'] / 1e6:.2f} MB ({run['snapshots']} snapshots)")
    finally:
        server.terminate()
        server.wait(30)
    source = Path(data_dir) / "runs.db"
    for first, ready, listed, _ in (timed_start(store_of(source, 200), 200),):
        print(f"start with 200 runs   first answer in {first:.2f} s, ready in {ready:.2f} s, all listed in "
              f"{listed:.2f} s (bench_startup: alternating rounds, and an empty store)")
    shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--classic", action="store_true", help="also measure a `classic` run's bytes (slow)")
    args = parser.parse_args()
    cfg = TrainConfig()
    print(f"config: {cfg.model_dump_json()}")
    serial_torch()
    store_dir = tempfile.mkdtemp(prefix="filterscope-bench-")
    store = Store(Path(store_dir) / "runs.db")
    bare: list[float] = []
    plain: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    jobs = [lambda: bare.append(in_thread(lambda: bare_loop(cfg))),
            lambda: plain.append(engine_here(cfg)),
            lambda: kept.append(engine_recorded(cfg, store))]
    try:
        for r in range(args.rounds):
            for job in jobs[r % 3:] + jobs[:r % 3]:
                job()
            print(f"round {r + 1}: bare {bare[-1]:,.0f}, encoded only {plain[-1]['samples_per_s']:,.0f}, "
                  f"recorded {kept[-1]['samples_per_s']:,.0f} samples/s")
    finally:
        store.close()
        shutil.rmtree(store_dir, ignore_errors=True)
    for label, runs in (("encoded only", plain), ("recorded (store on)", kept)):
        ratios = [e["samples_per_s"] / b for e, b in zip(runs, bare, strict=True)]
        shares = [e["share"] for e in runs]
        print(f"{label:<22} ratio to bare loop {statistics.median(ratios):.3f} (range {min(ratios):.2f}-"
              f"{max(ratios):.2f}); own work in the training thread {100 * statistics.median(shares):.1f}% "
              f"(range {100 * min(shares):.1f}-{100 * max(shares):.1f}%; goal <= 3%)")
    ratios = [k["samples_per_s"] / p["samples_per_s"] for k, p in zip(kept, plain, strict=True)]
    print(f"recorded / encoded only {statistics.median(ratios):.3f} (median per round)")
    reads(cfg, args.classic)


if __name__ == "__main__":
    main()
