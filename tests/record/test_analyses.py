"""Filter analyses in the run store: kept per snapshot, read back as written, and one that cannot be encoded
is dropped alone, never rolling back the writes it shares a transaction with."""

from __future__ import annotations

from pathlib import Path

from filterscope.record.store import Store, StoredRun


def test_an_analysis_is_read_back_and_a_bad_one_is_dropped_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    store.add_run(StoredRun("r1", 0.0, "-", {}, {"status": "running"}, []))
    told: list[int] = []
    store.add_analysis("r1", (0, 0, 0.1), lambda: {"seq": 0, "layers": []}, lambda: told.append(0))
    store.add_analysis("r1", (5, 250, 0.1), lambda: {"seq": 5, "bad": float("nan")}, lambda: told.append(5))
    store.add_snapshot("r1", (5, 250, 1, True), b"frame")
    assert store.flush()
    assert store.analysis("r1", 0) == {"seq": 0, "layers": []} and store.analysis("r1", 5) is None
    assert told == [0] and store.frame("r1", 5) is not None  # the frame in the same transaction is kept
    assert store.load_runs()[0].analyses == [(0, 0, 0.1)]
    store.close()
