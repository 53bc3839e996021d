"""A damaged store, a damaged row, a read-only data directory: one sentence each, naming the file, never a
traceback or a 500; the server starts (moving a damaged store aside) and says where the old file is."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from filterscope.record import framepack
from filterscope.record.schema import open_store
from filterscope.record.writer import StorageFailed
from tests.api.conftest import QUICK, owner_client, start_run, wait_status
from tests.conftest import FILTERSCOPE

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("damage", ["bad header", "truncated"])
def test_a_damaged_store_is_moved_aside_and_the_server_starts_empty(data_dir: Path, damage: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    with owner_client() as client:
        run = start_run(client, **QUICK)
        wait_status(client, run["id"], "finished", timeout=120)
    db = data_dir / "runs.db"
    data = db.read_bytes()
    db.write_bytes(b"this is not SQLite" + data[18:] if damage == "bad header" else data[: len(data) // 3])
    with owner_client() as again:
        assert again.get("/healthz").status_code == 200 and again.get("/api/runs").json() == []
    [aside] = [p for p in data_dir.iterdir() if p.name.startswith("runs.db.damaged-") and not p.name.endswith(
        ("-wal", "-shm"))]
    assert aside.read_bytes()[:18] == (b"this is not SQLite" if damage == "bad header" else data[:18])
    said = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(said) == 1 and str(db) in said[0] and str(aside) in said[0]


def test_a_damaged_snapshot_answers_a_sentence_not_a_500(data_dir: Path) -> None:
    with owner_client() as client:
        run = start_run(client, **QUICK)
        wait_status(client, run["id"], "finished", timeout=120)
        snapshots = client.get(f"/api/runs/{run['id']}/snapshots").json()
        seq = snapshots[3]["seq"]
        with sqlite3.connect(data_dir / "runs.db") as conn:  # its compressed bytes broken, the file intact
            stored = dict(conn.execute("SELECT seq, frame FROM snapshots WHERE run_id = ?", (run["id"],)))
            conn.execute("UPDATE snapshots SET frame = ? WHERE run_id = ? AND seq = ?", (b"\x00broken", run["id"], seq))
        res = client.get(f"/api/runs/{run['id']}/snapshots/{seq}")
        assert res.status_code == 410
        assert res.json()["detail"].startswith(f"Snapshot {seq} of run {run['id']} is damaged on disk")
        # The moments stored against it, up to the next one kept whole (framepack.KEY_EVERY), go with it, and
        # say why; every other moment is there.
        later = [s["seq"] for s in snapshots if s["seq"] > seq]
        whole = next(s for s in later if framepack.reference(stored[s]) is None)
        with_it = [s for s in later if s < whole]
        assert with_it and len(with_it) < framepack.KEY_EVERY
        for other in with_it:
            res = client.get(f"/api/runs/{run['id']}/snapshots/{other}")
            assert res.status_code == 410
            assert f"stored against snapshot {seq}, which cannot be read" in res.json()["detail"]
        for other in [s["seq"] for s in snapshots if s["seq"] < seq or s["seq"] >= whole]:
            assert client.get(f"/api/runs/{run['id']}/snapshots/{other}").status_code == 200
        assert client.get(f"/api/runs/{run['id']}/export/weights.npz").status_code == 410


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may write: a read-only tmpfs as root (who ignores permissions), else chmod 555."""
    where = tmp_path / "ro"
    where.mkdir()
    if os.geteuid() != 0:
        where.chmod(0o555)
        yield where
        where.chmod(0o755)
        return
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(where)]
    if subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_a_read_only_data_directory_is_said_in_one_sentence(read_only: Path) -> None:
    with pytest.raises(StorageFailed, match=f"The data directory {read_only} is read-only"):
        open_store(read_only / "runs.db")


def test_serve_on_a_read_only_data_directory_says_so_in_one_line(read_only: Path) -> None:
    done = subprocess.run([*FILTERSCOPE, "serve", "--data-dir", str(read_only), "--port", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and f"{read_only} is read-only" in done.stderr and "Traceback" not in done.stderr
