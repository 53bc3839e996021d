"""The run store: every run, its history and every snapshot frame, in one SQLite database in WAL mode.

Why SQLite: it ships with Python, one file holds everything, a transaction is all-or-nothing (a server killed
mid-write reopens to the last commit, never half a snapshot), and WAL lets readers (the API, in the thread
pool) read while the one writer appends. Frames are stored zlib-compressed (level 1: about 0.6 ms a frame,
two thirds of the size) and handed back byte for byte as they went out on the socket.

All writes go through one writer thread, fed by a queue: the training thread only enqueues, and the event
loop never touches the disk. A write's `then` callback runs after its transaction commits, which is how a
frame reaches the socket only once it is safe on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import queue
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.streaming.protocol import nulls, significant4

log = logging.getLogger(__name__)

WRITER_NICENESS = 5

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    token_hash TEXT NOT NULL,
    meta TEXT NOT NULL,            -- config, layers, classes, steps_per_epoch, total_steps (JSON)
    state TEXT NOT NULL,           -- status, message, epoch, step, samples_seen, elapsed, ... (JSON)
    epochs TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL,
    first INTEGER NOT NULL,        -- the step of losses[0]
    losses BLOB NOT NULL,          -- float32, NaN for a non-finite loss
    ratios BLOB,                   -- float32 (layers, len(losses)): update ratios, conv layers in meta order
    PRIMARY KEY (run_id, first)
);
CREATE TABLE IF NOT EXISTS snapshots (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    epoch_end INTEGER NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,         -- length(frame), kept so that start-up need not read every blob
    frame BLOB NOT NULL,           -- zlib of the frame as sent
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    seq INTEGER NOT NULL,          -- the latest snapshot before it
    epoch INTEGER NOT NULL,
    anchor INTEGER NOT NULL,       -- kept for good; otherwise replaced by the run's next checkpoint
    resumable INTEGER NOT NULL,    -- holds the optimizer's state: training can go on from it
    size INTEGER NOT NULL,
    data BLOB NOT NULL,            -- torch.save of the state
    PRIMARY KEY (run_id, step, seq)
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL             -- a status or error message as sent (JSON)
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id);
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    body TEXT NOT NULL             -- {"field", "values", "base", "runs"}: one run per value, in order (JSON)
);
CREATE TABLE IF NOT EXISTS analyses (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,          -- the snapshot whose weights it analysed (step 0 and every epoch end)
    step INTEGER NOT NULL,
    seconds REAL NOT NULL,         -- training-thread time it cost
    size INTEGER NOT NULL,
    data BLOB NOT NULL,            -- zlib of its JSON: every conv layer's top patches and health
    PRIMARY KEY (run_id, seq)
);
"""


@dataclass
class StoredRun:
    """One run as the store holds it (everything but frames and checkpoints, which are read on demand)."""

    id: str
    created_at: float
    token_hash: str
    meta: dict[str, Any]
    state: dict[str, Any]
    epochs: list[dict[str, Any]]
    steps: list[int] = field(default_factory=list)
    losses: list[float | None] = field(default_factory=list)
    ratios: dict[str, list[float | None]] = field(default_factory=dict)  # per conv layer, one per step
    snapshots: list[tuple[int, int, int, bool]] = field(default_factory=list)  # (seq, step, epoch, epoch_end)
    events: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0  # bytes of its rows' blobs and texts
    analyses: list[tuple[int, int, float]] = field(default_factory=list)  # (seq, step, seconds)


@dataclass(frozen=True)
class Checkpoint:
    step: int
    seq: int
    epoch: int
    anchor: bool
    resumable: bool
    state: dict[str, Any]


def token_hash(token: str) -> str:
    """What the store keeps of a control token: enough to check one, useless to steal."""
    return hashlib.sha256(token.encode()).hexdigest()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Store:
    """The database file, its writer thread and a pool of reader connections."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._writer_conn = self._connect()
        self._writer_conn.executescript(SCHEMA)
        columns = {row[1] for row in self._writer_conn.execute("PRAGMA table_info(steps)")}
        if "ratios" not in columns:  # a store written before update ratios were kept
            self._writer_conn.execute("ALTER TABLE steps ADD COLUMN ratios BLOB")
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._queue: queue.Queue[tuple[Callable[[sqlite3.Connection], object], Callable[[], None] | None] | None] = \
            queue.Queue()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit survives the process being killed (it is in the OS's cache); only a power cut may
        # lose the last few, and the database stays consistent either way.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=OFF")
        return conn

    # ---- writing (any thread: queued) ----------------------------------------------------------------------

    def submit(self, write: Callable[[sqlite3.Connection], object], then: Callable[[], None] | None = None) -> None:
        """Run `write` in the writer's next transaction; call `then` (on the writer thread) once committed."""
        if self._closed:
            log.warning("store closed: a write was dropped")
            return
        self._queue.put((write, then))

    def _write_loop(self) -> None:
        # Encoding, compressing and writing yield to training on a shared core (as uploads do: background.py).
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICENESS)
        conn = self._writer_conn
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < 256:  # one transaction for whatever has piled up
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            try:
                conn.execute("BEGIN IMMEDIATE")
                for write, _ in batch:
                    write(conn)
                conn.execute("COMMIT")
            except Exception:
                log.exception("store write failed; %d writes rolled back", len(batch))
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                continue
            for _, then in batch:
                if then is not None:
                    try:
                        then()
                    except Exception:
                        log.exception("after-commit callback failed")

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every write queued so far is committed; True if it was in time."""
        done = threading.Event()
        self.submit(lambda _c: None, done.set)
        return done.wait(timeout)

    def close(self) -> None:
        """Write what is queued, stop the writer and close every connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join(60)
        self._writer_conn.close()
        with self._readers_lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()

    # The writes a run makes, each returning the bytes it adds (the run's size is kept in memory).

    def add_run(self, run: StoredRun) -> None:
        self.submit(lambda c: c.execute(
            "INSERT INTO runs (id, created_at, token_hash, meta, state, epochs) VALUES (?, ?, ?, ?, ?, ?)",
            (run.id, run.created_at, run.token_hash, _dumps(run.meta), _dumps(run.state), _dumps(run.epochs))))

    def set_state(self, run_id: str, state: dict[str, Any], then: Callable[[], None] | None = None) -> None:
        text = _dumps(state)
        self.submit(lambda c: c.execute("UPDATE runs SET state = ? WHERE id = ?", (text, run_id)), then)

    def set_epochs(self, run_id: str, epochs: list[dict[str, Any]], then: Callable[[], None] | None = None) -> None:
        text = _dumps(epochs)
        self.submit(lambda c: c.execute("UPDATE runs SET epochs = ? WHERE id = ?", (text, run_id)), then)

    def add_steps(self, run_id: str, first: int, losses: list[float | None],
                  ratios: list[list[float | None]] | None = None, then: Callable[[], None] | None = None) -> None:
        """Losses of consecutive steps from `first`, and per conv layer (in the run's order) their update ratios."""
        blob = np.array([np.nan if x is None else x for x in losses], "<f4").tobytes()
        per_layer = None if not ratios else \
            np.array([[np.nan if x is None else x for x in row] for row in ratios], "<f4").tobytes()
        self.submit(lambda c: c.execute("INSERT OR REPLACE INTO steps (run_id, first, losses, ratios) "
                                        "VALUES (?, ?, ?, ?)", (run_id, first, blob, per_layer)), then)

    def add_event(self, run_id: str, body: str, then: Callable[[], None] | None = None) -> None:
        self.submit(lambda c: c.execute("INSERT INTO events (run_id, body) VALUES (?, ?)", (run_id, body)), then)

    def add_snapshot(self, run_id: str, ref: tuple[int, int, int, bool], frame: bytes | Callable[[], bytes],
                     then: Callable[[bytes], None] | None = None, sized: Callable[[int], None] | None = None) -> None:
        """Store a snapshot's frame; `frame` may be a function that makes it, called on the writer thread (so
        that encoding costs the training thread nothing). `then` gets the frame once it is committed."""
        seq, step, epoch, epoch_end = ref
        made: list[bytes] = []

        def write(c: sqlite3.Connection) -> None:  # encoded and compressed here, on the writer thread
            data = frame() if callable(frame) else frame
            made.append(data)
            packed = zlib.compress(data, 1)
            etag = hashlib.blake2b(data, digest_size=12).hexdigest()
            c.execute("INSERT OR REPLACE INTO snapshots (run_id, seq, step, epoch, epoch_end, etag, size, frame) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (run_id, seq, step, epoch, int(epoch_end), etag, len(packed), packed))
            if sized is not None:
                sized(len(packed))

        self.submit(write, None if then is None else lambda: then(made[0]))

    def add_analysis(self, run_id: str, ref: tuple[int, int, float], body: Callable[[], dict[str, Any]],
                     then: Callable[[], None] | None = None, sized: Callable[[int], None] | None = None) -> None:
        """Store snapshot `seq`'s filter analysis, `ref` (seq, step, seconds); `body` makes its JSON on the
        writer thread, off the training thread. `then` runs once it is committed (not if it could not be encoded)."""
        seq, step, seconds = ref
        stored: list[bool] = []

        def write(c: sqlite3.Connection) -> None:
            try:
                text = json.dumps(body(), separators=(",", ":"), allow_nan=False)
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

    def add_checkpoint(self, run_id: str, point: Checkpoint, sized: Callable[[int], None] | None = None) -> None:
        """Store a checkpoint; it replaces the run's previous non-anchor one. `sized` gets the change in bytes."""
        def write(c: sqlite3.Connection) -> None:  # serialised here, on the writer thread
            buf = io.BytesIO()
            torch.save(point.state, buf)
            data = buf.getvalue()
            freed = self._drop_rolling(c, run_id)
            c.execute("INSERT OR REPLACE INTO checkpoints (run_id, step, seq, epoch, anchor, resumable, size, data) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (run_id, point.step, point.seq, point.epoch,
                                                         int(point.anchor), int(point.resumable), len(data), data))
            if sized is not None:
                sized(len(data) - freed)

        self.submit(write)

    def drop_rolling(self, run_id: str, sized: Callable[[int], None] | None = None) -> None:
        """Forget the run's non-anchor checkpoint (a run that ended will not resume)."""
        def write(c: sqlite3.Connection) -> None:
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

    def load_sweeps(self) -> list[tuple[str, float, dict[str, Any]]]:
        """Every sweep: (id, created_at, body), oldest first."""
        with self.reader() as c:
            return [(row[0], row[1], json.loads(row[2]))
                    for row in c.execute("SELECT id, created_at, body FROM sweeps ORDER BY created_at")]

    def delete_run(self, run_id: str, then: Callable[[], None] | None = None) -> None:
        def write(c: sqlite3.Connection) -> None:
            for table in ("snapshots", "checkpoints", "steps", "events", "analyses"):
                c.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))  # noqa: S608 (fixed names)
            c.execute("DELETE FROM runs WHERE id = ?", (run_id,))

        self.submit(write, then)

    # ---- reading (any thread) -------------------------------------------------------------------------

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A connection of the reader pool for the duration of the block."""
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._connect()
            with self._readers_lock:
                self._all_readers.append(conn)
        try:
            yield conn
        finally:
            self._readers.put(conn)

    def load_runs(self) -> list[StoredRun]:
        """Every stored run with its history (not its frames), oldest first."""
        with self.reader() as c:
            runs = {row[0]: StoredRun(row[0], row[1], row[2], json.loads(row[3]), json.loads(row[4]),
                                      json.loads(row[5]), size=row[6])
                    for row in c.execute("SELECT id, created_at, token_hash, meta, state, epochs, "
                                         "length(meta) + length(state) + length(epochs) FROM runs "
                                         "ORDER BY created_at")}
            chunks: dict[str, list[tuple[int, np.ndarray, np.ndarray | None]]] = {}
            for run_id, first, blob, per_layer in c.execute(
                    "SELECT run_id, first, losses, ratios FROM steps ORDER BY run_id, first"):
                run = runs.get(run_id)
                if run is None:
                    continue
                values = np.frombuffer(blob, "<f4")
                rows = np.frombuffer(per_layer, "<f4").reshape(-1, len(values)) if per_layer is not None else None
                chunks.setdefault(run_id, []).append((first, values, rows))
                run.size += len(blob) + (len(per_layer) if per_layer is not None else 0)
            for run_id, parts in chunks.items():  # each run's steps in one go: start-up reads them all
                run = runs[run_id]
                run.steps = [step for first, values, _ in parts for step in range(first, first + len(values))]
                run.losses = nulls(np.concatenate([values for _, values, _ in parts]).astype(np.float64))
                for i, name in enumerate(layer["name"] for layer in run.meta.get("layers", [])):
                    row = np.concatenate([rows[i] if rows is not None and i < rows.shape[0]
                                          else np.full(len(values), np.nan) for _, values, rows in parts])
                    # They travel at 4 significant digits (codec._ratio): read back as they were sent.
                    run.ratios[name] = nulls(significant4(row))
            for run_id, seq, step, epoch, epoch_end, size in c.execute(
                    "SELECT run_id, seq, step, epoch, epoch_end, size FROM snapshots ORDER BY run_id, seq"):
                if run_id in runs:
                    runs[run_id].snapshots.append((seq, step, epoch, bool(epoch_end)))
                    runs[run_id].size += size
            for run_id, size in c.execute("SELECT run_id, sum(size) FROM checkpoints GROUP BY run_id"):
                if run_id in runs:
                    runs[run_id].size += size
            for run_id, body in c.execute("SELECT run_id, body FROM events ORDER BY n"):
                if run_id in runs:
                    runs[run_id].events.append(json.loads(body))
            for run_id, seq, step, seconds, size in c.execute(
                    "SELECT run_id, seq, step, seconds, size FROM analyses ORDER BY run_id, seq"):
                if run_id in runs:
                    runs[run_id].analyses.append((seq, step, seconds))
                    runs[run_id].size += size
        return list(runs.values())

    def frame(self, run_id: str, seq: int) -> tuple[bytes, str] | None:
        """Snapshot `seq`'s frame exactly as sent, and its ETag; None if there is none."""
        with self.reader() as c:
            row = c.execute("SELECT frame, etag FROM snapshots WHERE run_id = ? AND seq = ?", (run_id, seq)).fetchone()
        return None if row is None else (zlib.decompress(row[0]), row[1])

    def analysis(self, run_id: str, seq: int) -> dict[str, Any] | None:
        """Snapshot `seq`'s filter analysis (see AnalysisEvent.body), or None if it has none."""
        with self.reader() as c:
            row = c.execute("SELECT data FROM analyses WHERE run_id = ? AND seq = ?", (run_id, seq)).fetchone()
        return None if row is None else dict(json.loads(zlib.decompress(row[0])))

    def frames(self, run_id: str) -> Iterator[tuple[int, bytes]]:
        """Every frame of a run, oldest first (read in one go, decompressed one at a time)."""
        with self.reader() as c:
            rows = c.execute("SELECT seq, frame FROM snapshots WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
        for seq, packed in rows:
            yield seq, zlib.decompress(packed)

    def checkpoint(self, run_id: str, at_or_before_step: int | None = None, resumable: bool = False,
                   ) -> Checkpoint | None:
        """The latest checkpoint (at or before a step; only resumable ones if asked), or None."""
        query = "SELECT step, seq, epoch, anchor, resumable, data FROM checkpoints WHERE run_id = ?"
        args: list[Any] = [run_id]
        if at_or_before_step is not None:
            query += " AND step <= ?"
            args.append(at_or_before_step)
        if resumable:
            query += " AND resumable = 1"
        query += " ORDER BY step DESC, seq DESC LIMIT 1"
        with self.reader() as c:
            row = c.execute(query, args).fetchone()
        if row is None:
            return None
        state = torch.load(io.BytesIO(row[5]), weights_only=True)
        return Checkpoint(row[0], row[1], row[2], bool(row[3]), bool(row[4]), state)
