"""Storage faults are answers, never silence: a full disk or a deleted data directory stops the runs with a
sentence on every page, refuses new work with 507, keeps /healthz answering, and loses nothing acknowledged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.api.conftest import QUICK, owner_client, start_run, wait_status
from tests.conftest import wait_for

LONG = {**QUICK, "epochs": 30}


def fill_the_disk(client: object) -> None:
    """Make the database full from now on: SQLite's own limit on its size, the same SQLITE_FULL a full disk gives."""
    store = client.app.state.runs.store  # type: ignore[attr-defined]
    store.submit(lambda c: c.execute(f"PRAGMA max_page_count = {c.execute('PRAGMA page_count').fetchone()[0]}"))


def test_a_full_disk_stops_the_run_tells_its_page_and_refuses_new_runs_with_507(data_dir: Path) -> None:
    with owner_client() as client:
        run = start_run(client, **LONG)
        wait_for(lambda: client.get(f"/api/runs/{run['id']}").json()["snapshots"] >= 5, 60)
        with client.websocket_connect(f"/ws/runs/{run['id']}") as ws:
            assert ws.receive_json()["type"] == "hello"
            fill_the_disk(client)
            while True:  # frames and losses still in flight, then the news
                text = ws.receive().get("text")
                message = json.loads(text) if text else {}
                if message.get("type") == "status" and message["status"] != "running":
                    break
        assert message["status"] == "interrupted" and "is full" in message["message"]
        assert "nothing after step" in message["message"]
        answered = client.get(f"/api/runs/{run['id']}").json()
        assert answered["status"] == "interrupted" and answered["message"] == message["message"]
        saved = answered["snapshots"]
        refused = client.post("/api/runs", json=QUICK)
        assert refused.status_code == 507 and "is full" in refused.json()["detail"]
        assert client.post(f"/api/runs/{run['id']}/resume").status_code == 507
        health = client.get("/healthz")
        assert health.status_code == 200 and "is full" in health.json()["storage"]
        assert len(client.get("/api/runs").json()) == 1  # the refused run is not listed: it was never stored
    with owner_client() as again:  # the space is back (the limit was the old connection's)
        [back] = again.get("/api/runs").json()
        assert back["id"] == run["id"] and back["status"] == "interrupted" and back["snapshots"] == saved
        assert again.get("/healthz").json()["storage"] is None
        again.tokens[run["id"]] = client.tokens[run["id"]]
        assert again.post(f"/api/runs/{run['id']}/resume").status_code == 200
        again.post(f"/api/runs/{run['id']}/stop")


def test_a_deleted_data_directory_is_said_and_new_runs_are_refused(tmp_path: Path) -> None:
    where = tmp_path / "runs"
    with owner_client(data_dir=where) as client:
        run = start_run(client, **LONG)
        wait_for(lambda: client.get(f"/api/runs/{run['id']}").json()["snapshots"] >= 3, 60)
        shutil.rmtree(where)
        wait_status(client, run["id"], "interrupted", timeout=30)
        assert "was deleted" in client.get(f"/api/runs/{run['id']}").json()["message"]
        refused = client.post("/api/runs", json=QUICK)
        assert refused.status_code == 507 and f"{where} was deleted" in refused.json()["detail"]
        assert "was deleted" in client.get("/healthz").json()["storage"]
