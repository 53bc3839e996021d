"""The run store: what goes in comes back byte for byte, a truncation forgets exactly what follows a checkpoint,
and a database whose writer was killed mid-transaction opens cleanly at its last commit."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import torch

from filterscope.record.store import Store, StoredRun, token_hash
from filterscope.training import checkpoints
from filterscope.training.events import CheckpointBlob

ROOT = Path(__file__).resolve().parents[2]


def stored(run_id: str = "r1") -> StoredRun:
    return StoredRun(run_id, time.time(), token_hash("secret"), {"config": {"lr": 0.1}}, {"status": "running"}, [])


def test_everything_written_comes_back_as_it_was(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    store.add_run(stored())
    frames = {seq: os.urandom(1000 + seq) for seq in range(5)}
    for seq, frame in frames.items():
        store.add_snapshot("r1", (seq, seq * 10, 0, seq == 4), frame)
    store.add_steps("r1", 1, ([2.3, 2.1, None], None))
    store.add_steps("r1", 4, ([1.9], None))
    store.set_epochs("r1", [{"epoch": 1, "test_accuracy": 0.9}])
    store.add_event("r1", '{"type":"status","status":"finished"}')
    weights = torch.randn(4, 3)
    state = {"loop": {"model": {"w": weights}}}
    store.add_checkpoint("r1", CheckpointBlob(4, 40, 1, True, False, checkpoints.save(state)))
    assert store.flush()
    store.close()

    again = Store(tmp_path / "runs.db")
    [run] = again.load_runs()
    assert run.token_hash == token_hash("secret") and run.meta == {"config": {"lr": 0.1}}
    assert run.snapshots == [(seq, seq * 10, 0, seq == 4) for seq in range(5)]
    assert run.steps == [1, 2, 3, 4] and run.losses[2] is None and abs(run.losses[0] - 2.3) < 1e-6  # type: ignore
    assert run.epochs == [{"epoch": 1, "test_accuracy": 0.9}] and run.events == [{"type": "status",
                                                                                  "status": "finished"}]
    for seq, frame in frames.items():
        found = again.frame("r1", seq)
        assert found is not None and found[0] == frame
    assert again.frame("r1", 99) is None
    point = again.checkpoint("r1")
    assert point is not None and point.step == 40
    assert torch.equal(checkpoints.load(point.data)["loop"]["model"]["w"], weights)
    assert run.size > sum(len(f) for f in frames.values()) // 2
    again.close()


def test_a_truncation_forgets_what_came_after_a_checkpoint(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    store.add_run(stored())
    for seq in range(6):
        store.add_snapshot("r1", (seq, seq * 5, 0, False), b"frame%d" % seq)
    store.add_steps("r1", 1, ([1.0] * 25, None))
    store.truncate("r1", seq=3, step=15, epoch=0)
    store.flush()
    [run] = store.load_runs()
    assert [s[0] for s in run.snapshots] == [0, 1, 2, 3]
    assert run.steps == list(range(1, 16))
    store.close()


WRITER = """
import sys, time
from filterscope.record.store import Store, StoredRun
store = Store(__import__("pathlib").Path(sys.argv[1]))
store.add_run(StoredRun("r1", time.time(), "h", {}, {}, []))
seq = 0
while True:
    store.add_snapshot("r1", (seq, seq, 0, False), bytes([seq % 256]) * 200_000)
    seq += 1
    if seq % 20 == 0:
        store.flush()
        print(seq, flush=True)
"""


def test_a_store_killed_mid_write_opens_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    while int(writer.stdout.readline()) < 100:  # well into a stream of 200 KB snapshots
        pass
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    writer.stdout.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = Store(path)
    [run] = store.load_runs()
    seqs = [s[0] for s in run.snapshots]
    assert len(seqs) >= 100 and seqs == list(range(len(seqs)))  # whole snapshots, none missing, none half
    found = store.frame("r1", seqs[-1])
    assert found is not None and found[0] == bytes([seqs[-1] % 256]) * 200_000
    store.close()


def test_ratios_read_back_at_four_significant_digits_as_they_were_sent() -> None:
    import numpy as np

    from filterscope.streaming.protocol import significant4
    rng = np.random.default_rng(0)
    values = (10.0 ** rng.uniform(-9, 17, 20_000) * rng.choice([1, -1], 20_000)).astype(np.float32)
    values[:3] = [0.0, np.nan, np.inf]
    got = significant4(values)
    assert got[0] == 0.0 and np.isnan(got[1]) and np.isnan(got[2])
    assert got[3:].tolist() == [float(f"{v:.4g}") for v in values[3:]]


def test_the_wal_stays_within_the_bound_the_disk_budget_sets(tmp_path: Path) -> None:
    """A small budget checkpoints the WAL often and cuts it back: it never holds much more than its pages between
    checkpoints (runs/disk.py wal_pages), however much is written; SQLite's own would let it reach 4 MB."""
    from filterscope.runs.disk import wal_pages

    budget = 4 * 1024 * 1024  # wal_pages: 64 (its floor), where SQLite's own would let the WAL reach 4 MB
    store = Store(tmp_path / "runs.db")
    store.bound_wal(wal_pages(budget))
    store.add_run(stored())
    wal = tmp_path / "runs.db-wal"
    largest = 0
    for i in range(400):  # 400 x 20 KB of incompressible losses: 8 MB through the WAL
        store.add_steps("r1", i * 5000, ([float(x) for x in os.urandom(5000)], None))
        if i % 20 == 19:
            store.flush()
            largest = max(largest, wal.stat().st_size)
    store.close()
    # at most its pages between checkpoints and the 20 writes of ~25 KB between two looks here
    assert wal_pages(budget) == 64 and 0 < largest <= wal_pages(budget) * 4096 + 20 * 25_000
