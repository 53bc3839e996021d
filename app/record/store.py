"""The run store: every run, its history and every snapshot frame, in one SQLite database in WAL mode
(tables and connections: schema.py; the writer thread: writer.py).

Why SQLite: it ships with Python, one file holds everything, a transaction is all-or-nothing (a server killed
mid-write reopens to the last commit, never half a snapshot), and WAL lets readers (the API, in the thread
pool) read while the one writer appends. Frames are stored zlib-compressed (level 1: about 0.6 ms a frame,
two thirds of the size) and handed back byte for byte as they went out on the socket.

All of a process's writes go through its one writer thread; a run is appended to only by the process that
holds its lease (lease.py), so several processes share the file without ever writing the same run. What
is stored is torch-free: checkpoints arrive as bytes their producer made (training.checkpoints reads them).
"""

from __future__ import annotations

import hashlib
import json
import logging
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

from app.record.schema import connect, migrate
from app.record.writer import Writer
from app.streaming.protocol import nulls, significant4
from app.training.events import CheckpointBlob, Deferred, made

log = logging.getLogger(__name__)

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
    event_n: int = 0  # the store's number of its latest event: a follower reads on from there


@dataclass(frozen=True)
class Checkpoint:
    """A stored checkpoint; `data` is torch.save's bytes (training.checkpoints.load reads them)."""

    step: int
    seq: int
    epoch: int
    anchor: bool
    resumable: bool
    data: bytes


@dataclass(frozen=True)
class Tail:
    """What a run gained since a follower last looked (Store.tail), in the order it was committed."""

    state: dict[str, Any]
    epochs: list[dict[str, Any]]
    steps: list[tuple[int, np.ndarray, np.ndarray | None]]  # (first, losses, ratios (layers * n) or None)
    frames: list[tuple[tuple[int, int, int, bool], int, bytes]]  # ((seq, step, epoch, epoch_end), size, frame)
    events: list[tuple[int, str]]  # (n, body as sent)
    analyses: list[tuple[int, int, float, int]]  # (seq, step, seconds, size)
    checkpoint_bytes: int


@contextmanager
def _reading(c: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: what the block reads from several tables agrees (another process may commit)."""
    c.execute("BEGIN")
    try:
        yield
    finally:
        c.execute("COMMIT")


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
        self._writer_conn = connect(path)
        migrate(self._writer_conn)
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._pending_frames = 0  # snapshots queued, not yet encoded and written (see behind)
        self._pending_lock = threading.Lock()
        self._writer = Writer(self._writer_conn, str(path.parent))
        self.writer = self._writer
        self.submit = self._writer.submit
        self.flush = self._writer.flush

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
        with self._readers_lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()

    # The writes a run makes, each returning the bytes it adds (the run's size is kept in memory).

    def add_run(self, run: StoredRun, then: Callable[[], None] | None = None) -> None:
        self.submit(lambda c: c.execute(
            "INSERT INTO runs (id, created_at, token_hash, meta, state, epochs) VALUES (?, ?, ?, ?, ?, ?)",
            (run.id, run.created_at, run.token_hash, _dumps(run.meta), _dumps(run.state), _dumps(run.epochs))), then)

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
            packed = zlib.compress(data, 1)
            etag = hashlib.blake2b(data, digest_size=12).hexdigest()
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
            data = made(point.data)
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
            conn = connect(self.path)
            with self._readers_lock:
                self._all_readers.append(conn)
        try:
            yield conn
        finally:
            self._readers.put(conn)

    def data_version(self, conn: sqlite3.Connection) -> int:
        """SQLite's data_version on `conn`: it changes whenever another connection has committed."""
        return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def run_ids(self) -> set[str]:
        """The id of every stored run (whoever appends it)."""
        with self.reader() as c:
            return {row[0] for row in c.execute("SELECT id FROM runs")}

    def load_runs(self, only: set[str] | None = None) -> list[StoredRun]:
        """Every stored run (or those in `only`) with its history (not its frames), oldest first."""
        with self.reader() as c, _reading(c):
            runs = {row[0]: StoredRun(row[0], row[1], row[2], json.loads(row[3]), json.loads(row[4]),
                                      json.loads(row[5]), size=row[6])
                    for row in c.execute("SELECT id, created_at, token_hash, meta, state, epochs, "
                                         "length(meta) + length(state) + length(epochs) FROM runs "
                                         "ORDER BY created_at") if only is None or row[0] in only}
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
            for run_id, n, body in c.execute("SELECT run_id, n, body FROM events ORDER BY n"):
                if run_id in runs:
                    runs[run_id].events.append(json.loads(body))
                    runs[run_id].event_n = n
            for run_id, seq, step, seconds, size in c.execute(
                    "SELECT run_id, seq, step, seconds, size FROM analyses ORDER BY run_id, seq"):
                if run_id in runs:
                    runs[run_id].analyses.append((seq, step, seconds))
                    runs[run_id].size += size
        return list(runs.values())

    def tail(self, run_id: str, seq: int, step: int, event_n: int, analysis_seq: int) -> Tail | None:
        """What another process appended to a run after these marks (its latest snapshot, step, event and
        analysis as already seen); None if the run is gone."""
        with self.reader() as c, _reading(c):
            row = c.execute("SELECT state, epochs FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            steps = c.execute("SELECT first, losses, ratios FROM steps WHERE run_id = ? AND first > ? "
                              "ORDER BY first", (run_id, step)).fetchall()
            frames = c.execute("SELECT seq, step, epoch, epoch_end, size, frame FROM snapshots WHERE run_id = ? "
                               "AND seq > ? ORDER BY seq", (run_id, seq)).fetchall()
            events = c.execute("SELECT n, body FROM events WHERE run_id = ? AND n > ? ORDER BY n",
                               (run_id, event_n)).fetchall()
            analyses = c.execute("SELECT seq, step, seconds, size FROM analyses WHERE run_id = ? AND seq > ? "
                                 "ORDER BY seq", (run_id, analysis_seq)).fetchall()
            (checkpoints,) = c.execute("SELECT coalesce(sum(size), 0) FROM checkpoints WHERE run_id = ?",
                                       (run_id,)).fetchone()
        return Tail(state=json.loads(row[0]), epochs=json.loads(row[1]),
                    steps=[(first, np.frombuffer(blob, "<f4"), None if r is None else np.frombuffer(r, "<f4"))
                           for first, blob, r in steps],
                    frames=[((sq, st, ep, bool(end)), size, zlib.decompress(f)) for sq, st, ep, end, size, f in frames],
                    events=[(n, body) for n, body in events],
                    analyses=[(sq, st, sec, size) for sq, st, sec, size in analyses],
                    checkpoint_bytes=int(checkpoints))

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
        return Checkpoint(row[0], row[1], row[2], bool(row[3]), bool(row[4]), bytes(row[5]))
