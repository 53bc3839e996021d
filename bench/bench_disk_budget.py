"""The disk budget is bytes on disk: what the data directory holds after each of 30 short runs against a small
FILTERSCOPE_MAX_DISK (issue 21: with a 1 MB budget a live run reached 18.6 MB, and with no runs listed the store
was 22 MB plus a 25 MB WAL).

On a real server in its own process with `--budget` MB: 30 runs one after another (`tiny` on `--images` images
of mnist, one epoch: about a second each), and after each has finished its weights.npz and conv1 GIF are asked
for, as a person keeping a run would (an ended run's exports are kept on disk, in their own share of the budget).
After every run, and five times a second throughout, the files of the data directory are measured with os.stat:
runs.db and its WAL (what the budget counts), the kept exports, and everything else in it (the lock file, leases,
the WAL's shared memory). Sizes are what the files say (st_size) and what they take (st_blocks). Figures only;
nothing here passes or fails; the machine is shared, so the seconds are noise and the bytes are not.

    .venv/bin/python -m bench.bench_disk_budget [--budget 12] [--runs 30] [--images 2048]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench.common import serve

FINAL = ("finished", "failed", "diverged", "stopped")
MB = 1024 * 1024


def measured(data_dir: Path) -> dict[str, int]:
    """Bytes of the data directory's files by kind, as os.stat says: st_size, and `taken` (st_blocks) of all."""
    found = {"db": 0, "wal": 0, "exports": 0, "other": 0, "taken": 0}
    for folder, _, names in os.walk(data_dir):
        for name in names:
            path = Path(folder, name)
            try:
                st = path.stat()
            except OSError:  # removed between the listing and the stat
                continue
            kind = "db" if path.name == "runs.db" else "wal" if path.name == "runs.db-wal" else \
                "exports" if "exports" in path.relative_to(data_dir).parts else "other"
            found[kind] += st.st_size
            found["taken"] += st.st_blocks * 512
    return found


def counted(m: dict[str, int]) -> int:
    """What the budget counts: the database and its WAL."""
    return m["db"] + m["wal"]


def total(m: dict[str, int]) -> int:
    return m["db"] + m["wal"] + m["exports"] + m["other"]


class Watch:
    """The largest of each measure, sampled five times a second."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.peak_counted, self.peak_total, self.peak_taken = data_dir, 0, 0, 0
        self.run, self.peak_during = 0, 0  # the run under way (counted from 1), and the one at the peak
        self.at_peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            m = measured(self.data_dir)
            if counted(m) > self.peak_counted:
                self.peak_counted, self.peak_during, self.at_peak = counted(m), self.run, m
            self.peak_total, self.peak_taken = max(self.peak_total, total(m)), max(self.peak_taken, m["taken"])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def wait_for(client: httpx.Client, run_id: str) -> dict[str, Any]:
    while True:
        run: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in FINAL:
            return run
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=12.0, help="FILTERSCOPE_MAX_DISK in MB (default 12)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--images", type=int, default=2048, help="training images per run (default 2048)")
    args = parser.parse_args()
    budget = int(args.budget * MB)
    data_dir = Path(tempfile.mkdtemp(prefix="filterscope-bench-"))
    proc, base = serve({"FILTERSCOPE_DATA_DIR": str(data_dir), "FILTERSCOPE_MAX_DISK": str(budget)})
    watch = Watch(data_dir)
    after: list[dict[str, int]] = []
    refused: list[str] = []
    started = time.monotonic()
    try:
        with httpx.Client(base_url=f"http://{base}", timeout=120) as client:
            for i in range(args.runs):
                watch.run = i + 1
                res = client.post("/api/runs", json={"epochs": 1, "train_subset": args.images})
                if res.status_code != 201:
                    refused.append(f"{res.status_code} {res.json().get('detail')}")
                    continue
                run = wait_for(client, res.json()["id"])
                for export in ("export/weights.npz", "export/filters.gif?layer=conv1"):
                    got = client.get(f"/api/runs/{run['id']}/{export}")
                    if got.status_code != 200:
                        refused.append(f"{got.status_code} {export}")
                time.sleep(0.5)  # what the server does once a run ends (eviction, checkpoint of the WAL)
                m = measured(data_dir)
                after.append(m)
                listed = len(client.get("/api/runs").json())
                print(f"run {i + 1:2}: {run['snapshots']} snapshots, {run['bytes'] / MB:.2f} MB; {listed} runs "
                      f"listed; runs.db {m['db'] / MB:.2f} + WAL {m['wal'] / MB:.2f} = {counted(m) / MB:.2f} MB "
                      f"counted; exports {m['exports'] / MB:.2f} MB; other {m['other'] / 1024:.0f} KB; all "
                      f"{total(m) / MB:.2f} MB ({m['taken'] / MB:.2f} MB of blocks)", flush=True)
    finally:
        watch.close()
        proc.terminate()
        proc.wait(30)
    seconds = time.monotonic() - started
    over = [i + 1 for i, m in enumerate(after) if counted(m) > budget]
    print()
    print(f"{len(after)} runs in {seconds:.0f} s against a budget of {args.budget:g} MB"
          f"{f'; {len(refused)} refused or failed: {refused[:3]}' if refused else ''}")
    print(f"  after each run, runs.db + WAL: largest {max(map(counted, after)) / MB:.2f} MB "
          f"({max(map(counted, after)) / budget:.0%} of the budget), above it after "
          f"{len(over)} run(s){f' ({over})' if over else ''}")
    print(f"  after each run, all files (with exports): largest {max(map(total, after)) / MB:.2f} MB "
          f"({max(map(total, after)) / budget:.0%}); blocks taken {max(m['taken'] for m in after) / MB:.2f} MB")
    print(f"  sampled five times a second throughout: runs.db + WAL peak {watch.peak_counted / MB:.2f} MB "
          f"({watch.peak_counted / budget:.0%}, during run {watch.peak_during}: runs.db "
          f"{watch.at_peak.get('db', 0) / MB:.2f} + WAL {watch.at_peak.get('wal', 0) / MB:.2f}); all files "
          f"{watch.peak_total / MB:.2f} MB "
          f"({watch.peak_total / budget:.0%}); blocks {watch.peak_taken / MB:.2f} MB")


if __name__ == "__main__":
    main()
