"""Several processes, one data directory: a second server is refused, and a run trained by another process
(`filterscope train`) is listed and streamed by the running server, live, and interrupted if it dies."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from filterscope.record.lease import Busy, FileLock, server_lock
from filterscope.streaming.codec import decode_frame
from tests.api.conftest import OwnerClient, owner_client, wait_status
from tests.conftest import FILTERSCOPE, wait_for

# A small run that takes a few seconds in its own process: enough moments to watch it live.
SMALL: dict[str, Any] = {"dataset": "mnist", "model": "tiny", "batch_size": 32, "epochs": 1, "train_subset": 800,
                         "snapshot_every": 5}
ROOT = Path(__file__).resolve().parents[2]


def producer(data_dir: Path, config: dict[str, Any]) -> subprocess.Popen[str]:
    """`filterscope train` in its own process, writing into `data_dir`."""
    return subprocess.Popen([*FILTERSCOPE, "train", "--data-dir", str(data_dir), "--config",
                             json.dumps(config)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "FILTERSCOPE_TRAINING_THREADS": "1"})


def end(proc: subprocess.Popen[str]) -> None:
    """Make sure the producer is gone and its pipes closed."""
    proc.kill()
    proc.communicate(timeout=30)


def token_of(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """The run id and control token the producer prints on its first line."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    run_id = line.split("training run ")[1].split()[0]
    token = line.split("control token: ")[1].split(")")[0]
    return run_id, token


def appears(client: OwnerClient, run_id: str, timeout: float = 30) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def listed() -> bool:
        res = client.get(f"/api/runs/{run_id}")
        if res.status_code == 200:
            found.update(res.json())
        return res.status_code == 200

    wait_for(listed, timeout)
    return found


def test_a_second_server_on_one_data_directory_is_refused_naming_the_first(data_dir: Path) -> None:
    with owner_client() as client:
        assert client.get("/healthz").status_code == 200
        with pytest.raises(Busy, match=rf"in use by process {os.getpid()} \(filterscope serve\)"):
            server_lock(data_dir)
        done = subprocess.run([*FILTERSCOPE, "serve", "--data-dir", str(data_dir), "--port", "0"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert f"is in use by process {os.getpid()}" in done.stderr and "Traceback" not in done.stderr
    assert FileLock(data_dir / "server.lock").is_free()  # the first server gave it back when it stopped


def test_a_run_another_process_trains_is_listed_streamed_live_and_cannot_be_paused_here(data_dir: Path) -> None:
    with owner_client() as client:
        proc = producer(data_dir, SMALL)
        try:
            run_id, token = token_of(proc)
            run = appears(client, run_id)
            assert run["kind"] == "process" and run["producer"]["pid"] == proc.pid
            assert run["capabilities"] == {"controllable": False, "resumable": True, "replayable": True,
                                           "inspectable": True}
            res = client.post(f"/api/runs/{run_id}/pause", headers={"Authorization": f"Bearer {token}"})
            assert res.status_code == 409 and f"trained by process {proc.pid}" in res.json()["detail"]
            frames: list[dict[str, Any]] = []
            with client.websocket_connect(f"/ws/runs/{run_id}") as ws:
                hello = ws.receive_json()
                assert hello["type"] == "hello" and hello["run"]["id"] == run_id
                while True:  # the producer's moments arrive as it commits them, then its end
                    message = ws.receive()
                    if message.get("bytes"):
                        frames.append(decode_frame(message["bytes"])[0])
                    elif message.get("text") and json.loads(message["text"]).get("status") == "finished":
                        break
            assert len(frames) >= 5 and [f["seq"] for f in frames] == sorted({f["seq"] for f in frames})
            assert proc.wait(60) == 0
        finally:
            end(proc)
        run = client.get(f"/api/runs/{run_id}").json()
        assert run["status"] == "finished" and run["producer"] is None
        stored = client.get(f"/api/runs/{run_id}/snapshots").json()
        assert run["snapshots"] == len(stored) and stored[-1]["step"] == run["total_steps"]
        with sqlite3.connect(data_dir / "runs.db") as conn:  # its epoch reached this server as it was written
            (epochs,) = conn.execute("SELECT epochs FROM runs WHERE id = ?", (run_id,)).fetchone()
        assert run["history"] == json.loads(epochs) and len(run["history"]) == 1
        last = client.get(f"/api/runs/{run_id}/snapshots/{stored[-1]['seq']}")
        assert last.status_code == 200 and decode_frame(last.content)[0]["step"] == run["total_steps"]


def test_a_producer_killed_mid_run_leaves_it_interrupted_and_the_server_can_finish_it(data_dir: Path) -> None:
    with owner_client() as client:
        proc = producer(data_dir, {**SMALL, "epochs": 50})  # far longer than it trains here
        try:
            run_id, token = token_of(proc)
            appears(client, run_id)
            wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["snapshots"] >= 12, 60)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            end(proc)
        # Noticed by the follower (a few looks a second), not only at the server's next start.
        wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["status"] == "interrupted", 10)
        run = client.get(f"/api/runs/{run_id}").json()
        assert f"({proc.pid}) ended before the run did" in run["message"]
        client.tokens[run_id] = token
        assert client.post(f"/api/runs/{run_id}/resume").json()["status"] in ("queued", "running")
        # This server trains it on from the producer's last checkpoint, as its own: it can pause and stop it now.
        wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["step"] > run["step"] + 20, 60)
        stopped = client.post(f"/api/runs/{run_id}/stop").json()
        assert stopped["status"] == "stopped" and stopped["producer"] is None


def test_a_server_started_while_another_process_trains_follows_the_run_instead_of_interrupting_it(
        data_dir: Path) -> None:
    proc = producer(data_dir, {**SMALL, "epochs": 50})  # far longer than this test lets it train
    try:
        run_id, _ = token_of(proc)
        time.sleep(1.0)  # it has begun writing before any server exists
        with owner_client() as client:
            run = appears(client, run_id)
            assert run["status"] in ("queued", "running") and run["producer"]["pid"] == proc.pid
            before = run["snapshots"]
            wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["snapshots"] > before + 3, 60)
            proc.send_signal(signal.SIGINT)  # Ctrl+C in the producer: it says so itself, with a checkpoint
            assert proc.wait(60) == 1
            run = wait_status(client, run_id, "interrupted")
            assert run["producer"] is None and "ended before the run did" not in (run["message"] or "")
    finally:
        end(proc)
