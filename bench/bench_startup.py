"""Start-up: seconds from `filterscope serve` to its first answer, to ready, and to its runs listed.

A server answers as soon as uvicorn listens (app/boot.py: `/healthz` says "starting", the page says so too)
while PyTorch is imported and the store, the shipped run and every stored run's history are read in the
background; then `/healthz` says "ok". Measured for an empty store and one holding 200 copies of a default
run (made here with `filterscope train` unless --source names a runs.db), alternating rounds, medians.

    .venv/bin/python -m bench.bench_startup [--rounds 3] [--runs 200] [--source PATH/runs.db]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx2 as httpx

from bench.common import FILTERSCOPE, ROOT, free_port, trained

GOAL = 2.0  # issue 26: healthy in at most 2 s with 200 stored runs


def store_of(source: Path, runs: int) -> Path:
    """A data directory whose store holds `runs` copies of the first run of `source` (a runs.db)."""
    data_dir = Path(tempfile.mkdtemp(prefix="filterscope-bench-"))
    db = data_dir / "runs.db"
    shutil.copy(source, db)
    with sqlite3.connect(db) as conn:
        [(seed,)] = conn.execute("SELECT id FROM runs ORDER BY created_at LIMIT 1").fetchall()
        conn.execute("DELETE FROM runs WHERE id != ?", (seed,))
        for i in range(runs - 1):
            new = f"c{i:05d}"
            conn.execute("INSERT INTO runs SELECT ?, created_at - ?, token_hash, meta, state, epochs FROM runs "
                         "WHERE id = ?", (new, i + 1, seed))
            for table, cols in (("steps", "first, losses, ratios"),
                                ("snapshots", "seq, step, epoch, epoch_end, etag, size, frame"),
                                ("checkpoints", "step, seq, epoch, anchor, resumable, size, data")):
                conn.execute(f"INSERT INTO {table} (run_id, {cols}) SELECT ?, {cols} FROM {table} "  # noqa: S608
                             "WHERE run_id = ?", (new, seed))
    return data_dir


def timed_start(data_dir: Path, runs: int) -> tuple[float, float, float, str]:
    """(first answer, ready, all `runs` listed) in seconds from the process's start, and the first answer."""
    port = free_port()
    env = {**os.environ, "FILTERSCOPE_DATA_DIR": str(data_dir), "FILTERSCOPE_PRETRAINED": "0",
           "FILTERSCOPE_MAX_DISK": str(100 * 10**9)}
    began = time.perf_counter()
    proc = subprocess.Popen([*FILTERSCOPE, "serve", "--port", str(port), "--log-level", "warning"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, env=env)
    base, first, said, ready = f"http://127.0.0.1:{port}", None, "", None
    try:
        while ready is None:
            try:
                status = httpx.get(f"{base}/healthz", timeout=5).json()["status"]
            except httpx.TransportError:
                assert proc.poll() is None and time.perf_counter() - began < 120, "the server did not start"
                time.sleep(0.01)
                continue
            now = time.perf_counter() - began
            if first is None:
                first, said = now, status
            if status == "ok":
                ready = now
            else:
                time.sleep(0.01)
        listed = len(httpx.get(f"{base}/api/runs", timeout=60).json())
        assert listed == runs, listed
        return first, ready, time.perf_counter() - began, said
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--source", type=Path, default=None, help="a runs.db whose first run is copied")
    args = parser.parse_args()
    stores = {"empty store": (Path(tempfile.mkdtemp(prefix="filterscope-bench-")), 0),
              f"{args.runs} runs": (store_of(args.source or trained(), args.runs), args.runs)}
    times: dict[str, list[tuple[float, float, float, str]]] = {label: [] for label in stores}
    for r in range(args.rounds):
        for label, (where, runs) in (stores.items() if r % 2 == 0 else reversed(stores.items())):
            times[label].append(timed_start(where, runs))
    for label, rows in times.items():
        first, ready, listed = (statistics.median(row[i] for row in rows) for i in range(3))
        print(f"{label:>12}: first answer {first:.2f} s ({rows[0][3]!r}), ready {ready:.2f} s, "  # noqa: T201
              f"runs listed {listed:.2f} s (medians of {len(rows)})")
    print(f"goal: healthy in at most {GOAL:g} s with {args.runs} runs")  # noqa: T201
    for where, _ in stores.values():
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
