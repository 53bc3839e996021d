"""The run store: every run, its history and every snapshot frame, in one SQLite database in WAL mode
(tables and connections: schema.py; the writer thread: writer.py).

Why SQLite: it ships with Python, one file holds everything, a transaction is all-or-nothing (a server killed
mid-write reopens to the last commit, never half a snapshot), and WAL lets readers (the API, in the thread
pool) read while the one writer appends. Frames are stored zlib-compressed, most as residuals against the
frame before (framepack.py: a default run's frames in 2.72 MB instead of 3.67), and handed back byte for byte
as they went out on the socket.

All of a process's writes go through its one writer thread; a run is appended to only by the process that
holds its lease (lease.py), so several processes share the file without ever writing the same run. What
is stored is torch-free: checkpoints arrive as bytes their producer made (training.checkpoints reads them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..training.events import CheckpointBlob, Deferred, made
from . import framepack
from .framepack import Packer
from .reads import Damaged, Reads
from .rows import Checkpoint, StoredRun, Tail
from .schema import connect, migrate, open_store
from .writer import Writer

# A run of steps as stored: their losses, and per conv layer (in the run's order) their update ratios (or None).
StepRows = tuple[list[float | None], list[list[float | None]] | None]

log = logging.getLogger(__name__)

def token_hash(token: str) -> str:
    """What the store keeps of a control token: enough to check one, useless to steal."""
    return hashlib.sha256(token.encode()).hexdigest()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Store(Reads):
    """The database file, its writer thread and a pool of reader connections."""

    def __init__(self, path: Path, check: bool = False) -> None:
        """`check`: look for damage first (and move a damaged store aside): only the data directory's server
        does, holding its lock; a producer beside it opens the file as it is."""
        self.path = path
        if check:
            self._writer_conn = open_store(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer_conn = connect(path)
            migrate(self._writer_conn)
        super().__init__()
        self._pending_frames = 0  # snapshots queued, not yet encoded and written (see behind)
        self._pending_lock = threading.Lock()
        self._writer = Writer(self._writer_conn, str(path.parent))
        self._packer = Packer()  # the writer thread's: each run's latest frame, to store the next against
        self._writer.rolled_back = self._packer.forget  # what it remembers may not be on disk
        self.writer = self._writer
        self.submit = self._writer.submit
        self.flush = self._writer.flush

    def disk_bytes(self) -> int:
        """What the store takes on disk now: the database file and its WAL."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += self.path.with_name(self.path.name + suffix).stat().st_size
            except OSError:
                pass
        return total

    def db_bytes(self) -> int:
        """What the database file alone takes on disk (its WAL is bounded apart: bound_wal)."""
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def bound_wal(self, pages: int) -> None:
        """Checkpoint the WAL every `pages` pages and cut it back to that size after each checkpoint."""
        self.submit(lambda c: (c.execute(f"PRAGMA wal_autocheckpoint={int(pages)}"),
                               c.execute(f"PRAGMA journal_size_limit={int(pages) * 4096}")))

    def behind(self) -> int:
        """Snapshots queued and not yet written: how far the writer has fallen behind the producers."""
        with self._pending_lock:
            return self._pending_frames

    def close(self) -> None:
        """Write what is queued, stop the writer and close every connection."""
        if self._writer.closed:
            return
        self._writer.close()
        self._writer_conn.close()
        self.close_readers()

    # The writes a run makes, each returning the bytes it adds (the run's size is kept in memory).

    def add_run(self, run: StoredRun, then: Callable[[], None] | None = None) -> None:
        self.submit(lambda c: c.execute(
            "INSERT INTO runs (id, created_at, token_hash, meta, state, epochs) VALUES (?, ?, ?, ?, ?, ?)",
            (run.id, run.created_at, run.token_hash, _dumps(run.meta), _dumps(run.state), _dumps(run.epochs))), then)

    def set_state(self, run_id: str, state: dict[str, Any], then: Callable[[], None] | None = None) -> None:
        """`state` is written as it is when its turn comes (on the writer thread): it must not change after."""
        self.submit(lambda c: c.execute("UPDATE runs SET state = ? WHERE id = ?", (_dumps(state), run_id)), then)

    def set_epochs(self, run_id: str, epochs: list[dict[str, Any]], then: Callable[[], None] | None = None) -> None:
        text = _dumps(epochs)
        self.submit(lambda c: c.execute("UPDATE runs SET epochs = ? WHERE id = ?", (text, run_id)), then)

    def add_steps(self, run_id: str, first: int, rows: Deferred[StepRows],
                  then: Callable[[], None] | None = None) -> None:
        """Losses of consecutive steps from `first`, and per conv layer (in the run's order) their update ratios;
        `rows` may be a function that makes them, called on the writer thread."""
        def write(c: sqlite3.Connection) -> None:
            losses, ratios = made(rows)
            blob = np.array([np.nan if x is None else x for x in losses], "<f4").tobytes()
            per_layer = None if not ratios else \
                np.array([[np.nan if x is None else x for x in row] for row in ratios], "<f4").tobytes()
            c.execute("INSERT OR REPLACE INTO steps (run_id, first, losses, ratios) VALUES (?, ?, ?, ?)",
                      (run_id, first, blob, per_layer))

        self.submit(write, then)

    def add_event(self, run_id: str, body: str, then: Callable[[], None] | None = None) -> None:
        self.submit(lambda c: c.execute("INSERT INTO events (run_id, body) VALUES (?, ?)", (run_id, body)), then)

    def add_snapshot(self, run_id: str, ref: tuple[int, int, int, bool], frame: Deferred[bytes],
                     then: Callable[[bytes], None] | None = None, sized: Callable[[int], None] | None = None) -> None:
        """Store a snapshot's frame; `frame` may be a function that makes it, called on the writer thread (so
        that encoding costs the training thread nothing). `then` gets the frame once it is committed."""
        seq, step, epoch, epoch_end = ref
        kept: list[bytes] = []
        with self._pending_lock:
            self._pending_frames += 1

        def write(c: sqlite3.Connection) -> None:  # encoded and compressed here, on the writer thread
            with self._pending_lock:
                self._pending_frames -= 1
            data = made(frame)
            kept.append(data)
            digest = hashlib.blake2b(data, digest_size=12).digest()
            etag = digest.hex()
            packed = self._packer.pack(run_id, seq, digest, data)
            c.execute("INSERT OR REPLACE INTO snapshots (run_id, seq, step, epoch, epoch_end, etag, size, frame) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (run_id, seq, step, epoch, int(epoch_end), etag, len(packed), packed))
            if sized is not None:
                sized(len(packed))

        self.submit(write, None if then is None else lambda: then(kept[0]))

    def add_analysis(self, run_id: str, ref: tuple[int, int, float], body: Deferred[dict[str, Any]],
                     then: Callable[[], None] | None = None, sized: Callable[[int], None] | None = None) -> None:
        """Store snapshot `seq`'s filter analysis, `ref` (seq, step, seconds); `body` makes its JSON on the
        writer thread, off the training thread. `then` runs once it is committed (not if it could not be encoded)."""
        seq, step, seconds = ref
        stored: list[bool] = []

        def write(c: sqlite3.Connection) -> None:
            try:
                text = json.dumps(made(body), separators=(",", ":"), allow_nan=False)
            except ValueError:  # never roll back the writes it shares a transaction with
                log.exception("the analysis of snapshot %d could not be encoded; it is not stored", seq)
                return
            packed = zlib.compress(text.encode(), 6)  # small and written once: compress it well
            c.execute("INSERT OR REPLACE INTO analyses (run_id, seq, step, seconds, size, data) "
                      "VALUES (?, ?, ?, ?, ?, ?)", (run_id, seq, step, seconds, len(packed), packed))
            stored.append(True)
            if sized is not None:
                sized(len(packed))

        self.submit(write, None if then is None else lambda: then() if stored else None)

    def add_checkpoint(self, run_id: str, point: CheckpointBlob, sized: Callable[[int], None] | None = None) -> None:
        """Store a checkpoint; it replaces the run's previous non-anchor one. `sized` gets the change in bytes."""
        def write(c: sqlite3.Connection) -> None:  # a deferred one is serialised here, on the writer thread
            data = framepack.pack_checkpoint(made(point.data))
            freed = self._drop_rolling(c, run_id)
            c.execute("INSERT OR REPLACE INTO checkpoints (run_id, step, seq, epoch, anchor, resumable, size, data) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (run_id, point.step, point.seq, point.epoch,
                                                         int(point.anchor), int(point.resumable), len(data), data))
            if sized is not None:
                sized(len(data) - freed)

        self.submit(write)

    def drop_rolling(self, run_id: str, sized: Callable[[int], None] | None = None) -> None:
        """Forget the run's non-anchor checkpoint (a run that ended will not resume), and its latest frame."""
        def write(c: sqlite3.Connection) -> None:
            self._packer.forget(run_id)  # no frame will be stored against it
            freed = self._drop_rolling(c, run_id)
            if sized is not None:
                sized(-freed)

        self.submit(write)

    @staticmethod
    def _drop_rolling(c: sqlite3.Connection, run_id: str) -> int:
        (freed,) = c.execute("SELECT coalesce(sum(size), 0) FROM checkpoints WHERE run_id = ? AND anchor = 0",
                             (run_id,)).fetchone()
        c.execute("DELETE FROM checkpoints WHERE run_id = ? AND anchor = 0", (run_id,))
        return int(freed)

    def truncate(self, run_id: str, seq: int, step: int, epoch: int) -> None:
        """Forget what came after a checkpoint: snapshots past `seq`, steps past `step`, checkpoints past it."""
        def write(c: sqlite3.Connection) -> None:
            self._packer.forget(run_id)
            c.execute("DELETE FROM snapshots WHERE run_id = ? AND seq > ?", (run_id, seq))
            c.execute("DELETE FROM steps WHERE run_id = ? AND first > ?", (run_id, step))
            c.execute("DELETE FROM checkpoints WHERE run_id = ? AND step > ?", (run_id, step))
            c.execute("DELETE FROM analyses WHERE run_id = ? AND seq > ?", (run_id, seq))
            row = c.execute("SELECT first, losses, ratios FROM steps WHERE run_id = ? ORDER BY first DESC LIMIT 1",
                            (run_id,)).fetchone()
            if row is not None:  # the chunk that straddles `step` keeps its first part
                first, blob, per_layer = row
                keep = max(0, step - first + 1)
                n = len(blob) // 4
                if keep < n:
                    if per_layer is not None:
                        per_layer = np.frombuffer(per_layer, "<f4").reshape(-1, n)[:, :keep].tobytes()
                    c.execute("UPDATE steps SET losses = ?, ratios = ? WHERE run_id = ? AND first = ?",
                              (blob[:keep * 4], per_layer, run_id, first))

        self.submit(write)

    def add_sweep(self, sweep_id: str, created_at: float, body: dict[str, Any]) -> None:
        text = _dumps(body)
        self.submit(lambda c: c.execute("INSERT INTO sweeps (id, created_at, body) VALUES (?, ?, ?)",
                                        (sweep_id, created_at, text)))

    def delete_run(self, run_id: str, then: Callable[[], None] | None = None) -> None:
        def write(c: sqlite3.Connection) -> None:
            self._packer.forget(run_id)
            for table in ("snapshots", "checkpoints", "steps", "events", "analyses"):
                c.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))  # noqa: S608 (fixed names)
            c.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            self._writer.vacuum_due = True  # after the commit: the freed pages back to the disk

        self.submit(write, then)


__all__ = ["Checkpoint", "Damaged", "Store", "StoredRun", "Tail", "token_hash"]
