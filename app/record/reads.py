"""Reading the run log (any thread): a pool of reader connections, and every query the server makes.

WAL lets these read while a writer commits, in this process or another. A row that cannot be read (a
damaged page of the file, a frame whose compression is broken) raises Damaged, which the API answers with
a sentence (410), never a 500: the run's other rows are still there.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from ..streaming.protocol import nulls, significant4
from . import framepack
from .rows import Checkpoint, StoredRun, Tail, reading
from .schema import connect


class Damaged(Exception):
    """A stored row cannot be read back; the message says which, in a sentence."""


# What else a damaged row takes with it: nothing, but a snapshot's frame those stored against it (framepack).
UNAFFECTED = "the run's other moments are unaffected"
FRAMES_UNAFFECTED = (f"the at most {framepack.KEY_EVERY - 1} moments stored against it go with it; the run's "
                     "others are unaffected")


@contextmanager
def damage(what: str, unaffected: str = UNAFFECTED) -> Iterator[None]:
    """Turn a damaged file or row, met while reading `what`, into Damaged."""
    try:
        yield
    except (sqlite3.DatabaseError, zlib.error, ValueError, struct.error, KeyError, TypeError) as exc:
        raise Damaged(f"{what} is damaged on disk and cannot be read ({exc}); {unaffected}.") from None


_HEADER_CHUNK = 4096  # compressed bytes read at a time: a `tiny` frame's header is ~2 KB inflated


def _header(blob: sqlite3.Blob) -> dict[str, Any]:
    """The JSON header at the start of a zlib-compressed frame (codec.py: <u32 length><JSON><arrays>)."""
    inflate = zlib.decompressobj()
    head = b""
    first = blob.read(_HEADER_CHUNK)
    chunk = first[framepack.zlib_start(first):]  # a frame kept as a residual: its header is as sent
    while True:
        if not chunk:
            raise ValueError("the frame ends inside its header")
        head += inflate.decompress(chunk)
        if len(head) >= 4:
            (length,) = struct.unpack_from("<I", head, 0)
            if len(head) >= 4 + length:
                return dict(json.loads(head[4:4 + length]))
        chunk = blob.read(_HEADER_CHUNK)


def _steps_of(run: StoredRun, chunks: list[tuple[int, bytes, bytes | None]]) -> None:
    """A run's steps, losses and per-layer update ratios from its stored chunks (first, losses, ratios), in order:
    a run has ~90 chunks (one per snapshot and every 25 steps), so all of them are read in a few array ops."""
    lens = np.array([len(blob) // 4 for _, blob, _ in chunks], np.int64)
    starts = np.cumsum(lens) - lens
    values = np.frombuffer(b"".join(blob for _, blob, _ in chunks), "<f4")
    total = len(values)
    run.steps = (np.repeat(np.array([first for first, _, _ in chunks], np.int64) - starts, lens)
                 + np.arange(total)).tolist()
    run.losses = nulls(values.astype(np.float64))
    kept = [per_layer for _, _, per_layer in chunks]
    run.size += 4 * total + sum(len(per_layer) for per_layer in kept if per_layer is not None)
    names = [layer["name"] for layer in run.meta.get("layers", [])]
    if not names:
        return
    layers = len(names)
    if all(per_layer is not None and len(per_layer) == 4 * layers * n for per_layer, n in zip(kept, lens.tolist(),
                                                                                             strict=True)):
        # Chunk i holds (layers, n_i) values from layers * starts[i] on: gather them into (layers, total).
        joined = np.frombuffer(b"".join(kept), "<f4")  # type: ignore[arg-type]  # none is None (checked)
        chunk = np.repeat(np.arange(len(chunks)), lens)
        at = np.arange(total) - starts[chunk]
        table = joined[(layers * starts)[chunk] + np.arange(layers)[:, None] * lens[chunk] + at]
    else:  # some chunk kept no ratios (NaN there), or another number of layers
        parts = []
        for per_layer, n in zip(kept, lens.tolist(), strict=True):
            part = np.full((layers, n), np.nan, np.float32)
            if per_layer is not None and n:
                rows = np.frombuffer(per_layer, "<f4").reshape(-1, n)[:layers]
                part[:len(rows)] = rows
            parts.append(part)
        table = np.concatenate(parts, axis=1)
    # They travel at 4 significant digits (codec.to_message): read back as they were sent.
    for name, row in zip(names, significant4(table.astype(np.float64)), strict=True):
        run.ratios[name] = nulls(row)


class Reads:
    """The reader pool and the queries (mixed into Store)."""

    path: Path

    def __init__(self) -> None:
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._bases = framepack.BasisCache()  # recently read frames' bases, to read the next against

    def _unpack(self, run_id: str, seq: int, blob: bytes, etag: str, c: sqlite3.Connection | None = None) -> bytes:
        """Frame `seq` of a run as sent, from its stored bytes (on `c`, or a pooled reader, where it was stored
        against frames before it that must be read too)."""
        def fetch(other: int) -> tuple[bytes, bytes] | None:
            query = "SELECT frame, etag FROM snapshots WHERE run_id = ? AND seq = ?"
            if c is not None:
                row = c.execute(query, (run_id, other)).fetchone()
            else:
                with self.reader() as conn:
                    row = conn.execute(query, (run_id, other)).fetchone()
            return None if row is None else (row[0], bytes.fromhex(row[1]))

        return framepack.read_frame(seq, blob, bytes.fromhex(etag), fetch, self._bases)

    def close_readers(self) -> None:
        with self._readers_lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()

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
        with self.reader() as c, reading(c):
            runs = {row[0]: StoredRun(row[0], row[1], row[2], json.loads(row[3]), json.loads(row[4]),
                                      json.loads(row[5]), size=row[6])
                    for row in c.execute("SELECT id, created_at, token_hash, meta, state, epochs, "
                                         "length(meta) + length(state) + length(epochs) FROM runs "
                                         "ORDER BY created_at") if only is None or row[0] in only}
            # Start-up reads every run's steps and snapshots: fetched whole, then each run's in a few array ops
            # (row by row, 200 default runs took 0.19-0.27 s; so, 0.11-0.15 s).
            steps = c.execute("SELECT run_id, first, losses, ratios FROM steps ORDER BY run_id, first").fetchall()
            for run_id, group in groupby(steps, itemgetter(0)):
                run = runs.get(run_id)
                if run is not None:
                    _steps_of(run, [row[1:] for row in group])
            snapshots = c.execute("SELECT run_id, seq, step, epoch, epoch_end, size FROM snapshots "
                                  "ORDER BY run_id, seq").fetchall()
            for run_id, group in groupby(snapshots, itemgetter(0)):
                run = runs.get(run_id)
                if run is not None:
                    _, seqs, at, epochs, ends, sizes = zip(*group, strict=True)
                    run.snapshots = list(zip(seqs, at, epochs, map(bool, ends), strict=True))
                    run.size += sum(sizes)
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
        with self.reader() as c, reading(c):
            row = c.execute("SELECT state, epochs FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            steps = c.execute("SELECT first, losses, ratios FROM steps WHERE run_id = ? AND first > ? "
                              "ORDER BY first", (run_id, step)).fetchall()
            frames = c.execute("SELECT seq, step, epoch, epoch_end, size, frame, etag FROM snapshots "
                               "WHERE run_id = ? AND seq > ? ORDER BY seq", (run_id, seq)).fetchall()
            with damage(f"A snapshot of run {run_id}", FRAMES_UNAFFECTED):
                unpacked = [((sq, st, ep, bool(end)), size, self._unpack(run_id, sq, f, tag, c))
                            for sq, st, ep, end, size, f, tag in frames]
            events = c.execute("SELECT n, body FROM events WHERE run_id = ? AND n > ? ORDER BY n",
                               (run_id, event_n)).fetchall()
            analyses = c.execute("SELECT seq, step, seconds, size FROM analyses WHERE run_id = ? AND seq > ? "
                                 "ORDER BY seq", (run_id, analysis_seq)).fetchall()
            (checkpoints,) = c.execute("SELECT coalesce(sum(size), 0) FROM checkpoints WHERE run_id = ?",
                                       (run_id,)).fetchone()
        return Tail(state=json.loads(row[0]), epochs=json.loads(row[1]),
                    steps=[(first, np.frombuffer(blob, "<f4"), None if r is None else np.frombuffer(r, "<f4"))
                           for first, blob, r in steps],
                    frames=unpacked,
                    events=[(n, body) for n, body in events],
                    analyses=[(sq, st, sec, size) for sq, st, sec, size in analyses],
                    checkpoint_bytes=int(checkpoints))

    def frame(self, run_id: str, seq: int) -> tuple[bytes, str] | None:
        """Snapshot `seq`'s frame exactly as sent, and its ETag; None if there is none."""
        with damage(f"Snapshot {seq} of run {run_id}", FRAMES_UNAFFECTED), self.reader() as c:
            row = c.execute("SELECT frame, etag FROM snapshots WHERE run_id = ? AND seq = ?", (run_id, seq)).fetchone()
            return None if row is None else (self._unpack(run_id, seq, row[0], row[1], c), row[1])

    def analysis(self, run_id: str, seq: int) -> dict[str, Any] | None:
        """Snapshot `seq`'s filter analysis (see AnalysisEvent.body), or None if it has none."""
        with damage(f"The analysis of snapshot {seq} of run {run_id}"), self.reader() as c:
            row = c.execute("SELECT data FROM analyses WHERE run_id = ? AND seq = ?", (run_id, seq)).fetchone()
            return None if row is None else dict(json.loads(zlib.decompress(row[0])))

    def frames(self, run_id: str) -> Iterator[tuple[int, bytes]]:
        """Every frame of a run, oldest first (read in one go, decompressed one at a time)."""
        with damage(f"A snapshot of run {run_id}", FRAMES_UNAFFECTED):
            with self.reader() as c:
                rows = c.execute("SELECT seq, frame, etag FROM snapshots WHERE run_id = ? ORDER BY seq",
                                 (run_id,)).fetchall()
            for seq, packed, etag in rows:
                yield seq, self._unpack(run_id, seq, packed, etag)

    def headers(self, run_id: str) -> Iterator[dict[str, Any]]:
        """Every frame's JSON header, oldest first, without the arrays: only the first compressed pages of each
        stored frame are read and inflated (a few KB of a 50-260 KB frame; blob I/O, not the whole row)."""
        with damage(f"A snapshot of run {run_id}"), self.reader() as c:
            rowids = c.execute("SELECT rowid FROM snapshots WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
            for (rowid,) in rowids:
                with c.blobopen("snapshots", "frame", rowid, readonly=True) as blob:
                    yield _header(blob)

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
        with damage(f"A checkpoint of run {run_id}"), self.reader() as c:
            row = c.execute(query, args).fetchone()
        if row is None:
            return None
        with damage(f"A checkpoint of run {run_id}"):
            data = framepack.unpack_checkpoint(bytes(row[5]))
        return Checkpoint(row[0], row[1], row[2], bool(row[3]), bool(row[4]), data)

    def load_sweeps(self) -> list[tuple[str, float, dict[str, Any]]]:
        """Every sweep: (id, created_at, body), oldest first."""
        with self.reader() as c:
            return [(row[0], row[1], json.loads(row[2]))
                    for row in c.execute("SELECT id, created_at, body FROM sweeps ORDER BY created_at")]

