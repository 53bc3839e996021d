"""Frames kept as residuals (record/framepack.py): every moment reads back byte for byte as it was sent,
through every way the server reads frames, from a cold start too; the bytes on disk shrink; a broken chain
is a damaged moment (410), never a wrong one; a write that did not commit never leaves a frame stored
against it."""

from __future__ import annotations

import json
import random
import sqlite3
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest

from filterscope.record import framepack
from filterscope.record.record import RunRecord, new_stored_run
from filterscope.record.store import Damaged, Store
from filterscope.runs.local import log_event
from filterscope.training.config import TrainConfig
from filterscope.training.engine import Engine


def header(frame: bytes) -> dict[str, Any]:
    (length,) = struct.unpack_from("<I", frame, 0)
    return dict(json.loads(frame[4:4 + length]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, bytes]]:
    """A one-epoch default run trained through the engine into a store, and every frame as it was published."""
    path = tmp_path_factory.mktemp("framepack") / "runs.db"
    store = Store(path)
    cfg = TrainConfig(epochs=1)
    record = RunRecord(new_stored_run("r1", "-", {"config": cfg.model_dump()}, cfg.lr), store)
    store.add_run(new_stored_run("r1", "-", record.meta, cfg.lr))
    sent: dict[int, bytes] = {}
    record.publish = lambda message, droppable, n: sent.__setitem__(header(message)["seq"], message) \
        if isinstance(message, bytes) else None
    engine = Engine(cfg, threads=1)
    engine.listen(lambda event: record.on_event(log_event(event)))
    engine.start()
    assert engine.join(180)
    store.flush()
    store.close()
    return path, sent


def test_every_moment_reads_back_as_sent_from_a_cold_start_in_any_order(
        trained: tuple[Path, dict[int, bytes]]) -> None:
    path, sent = trained
    assert len(sent) > 30
    store = Store(path)  # nothing cached: each moment read alone walks its chain
    try:
        seqs = list(sent)
        random.Random(0).shuffle(seqs)
        for seq in seqs:
            found = store.frame("r1", seq)
            assert found is not None and found[0] == sent[seq], seq
        assert dict(store.frames("r1")) == sent
        assert list(store.headers("r1")) == [header(sent[s]) for s in sorted(sent)]
        tail = store.tail("r1", 3, 0, 0, -1)
        assert tail is not None and [frame for _, _, frame in tail.frames] == [sent[s] for s in sorted(sent) if s > 3]
    finally:
        store.close()


def test_most_frames_keep_w_as_a_residual_and_take_far_fewer_bytes(trained: tuple[Path, dict[int, bytes]]) -> None:
    path, sent = trained
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT seq, frame FROM snapshots WHERE run_id = 'r1' ORDER BY seq").fetchall()
    residual = [seq for seq, blob in rows if framepack.reference(blob) is not None]
    assert rows[0][0] not in residual  # the first is kept whole
    assert len(residual) >= len(rows) * (framepack.KEY_EVERY - 2) / framepack.KEY_EVERY
    stored = sum(len(blob) for _, blob in rows)
    whole = sum(len(zlib.compress(frame, framepack.LEVEL)) for frame in sent.values())
    assert stored < 0.85 * whole, (stored, whole)  # measured: 0.78 on the default run


def test_a_frame_whose_predecessor_is_gone_is_damaged_not_wrong(tmp_path: Path,
                                                                trained: tuple[Path, dict[int, bytes]]) -> None:
    path, sent = trained
    copy = tmp_path / "runs.db"
    with sqlite3.connect(path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    with sqlite3.connect(copy) as conn:
        rows = conn.execute("SELECT seq, frame FROM snapshots WHERE run_id = 'r1' ORDER BY seq").fetchall()
        refs = {seq: framepack.reference(blob) for seq, blob in rows}
        victim, dependent = next((ref[0], seq) for seq, ref in refs.items() if ref is not None and refs[ref[0]])
        conn.execute("DELETE FROM snapshots WHERE run_id = 'r1' AND seq = ?", (victim,))
    store = Store(copy)
    try:
        with pytest.raises(Damaged, match=f"Snapshot {dependent} of run r1 is damaged"):
            store.frame("r1", dependent)
        first = store.frame("r1", min(sent))
        assert first is not None and first[0] == sent[min(sent)]  # the moments before the gap are all there
    finally:
        store.close()


def test_a_write_rolled_back_never_has_a_frame_stored_against_it(tmp_path: Path,
                                                                  trained: tuple[Path, dict[int, bytes]]) -> None:
    _, sent = trained
    seqs = sorted(sent)
    store = Store(tmp_path / "runs.db")
    store.add_run(new_stored_run("r1", "-", {"config": {}}, 0.01))
    try:
        store.add_snapshot("r1", (seqs[0], 0, 0, False), sent[seqs[0]])
        store.flush()
        held, go = threading.Event(), threading.Event()

        def hold(_: sqlite3.Connection) -> None:
            held.set()
            go.wait(10)

        def broken(_: sqlite3.Connection) -> None:
            raise RuntimeError("a bug in some write")

        store.submit(hold)  # the writer waits here, so the next two go in one transaction
        assert held.wait(10)
        store.add_snapshot("r1", (seqs[1], 1, 0, False), sent[seqs[1]])
        store.submit(broken)  # rolls the snapshot back with it
        go.set()
        store.flush()
        store.add_snapshot("r1", (seqs[2], 2, 0, False), sent[seqs[2]])
        store.flush()
        assert store.frame("r1", seqs[1]) is None
        found = store.frame("r1", seqs[2])
        assert found is not None and found[0] == sent[seqs[2]]
    finally:
        store.close()


def test_a_packed_blob_cut_short_is_damaged_not_a_crash(tmp_path: Path, trained: tuple[Path, dict[int, bytes]]) -> None:
    _, sent = trained
    store = Store(tmp_path / "runs.db")
    store.add_run(new_stored_run("r1", "-", {"config": {}}, 0.01))
    store.add_snapshot("r1", (0, 0, 0, False), sent[min(sent)])
    store.flush()
    try:
        with sqlite3.connect(tmp_path / "runs.db") as conn:
            conn.execute("UPDATE snapshots SET frame = ? WHERE run_id = 'r1'", (framepack.MAGIC + b"\x01",))
            conn.execute("INSERT INTO checkpoints (run_id, step, seq, epoch, anchor, resumable, size, data) "
                         "VALUES ('r1', 0, 0, 0, 1, 1, 5, ?)", (framepack.CHECKPOINT_MAGIC + b"\x01",))
        with pytest.raises(Damaged, match="Snapshot 0 of run r1 is damaged"):
            store.frame("r1", 0)
        with pytest.raises(Damaged, match="A checkpoint of run r1 is damaged"):
            store.checkpoint("r1")
    finally:
        store.close()
