"""Limits that answer before work is done: a config that cannot run is refused whatever the queue holds."""

from __future__ import annotations

from app.runs.queue import MAX_QUEUED
from tests.api.conftest import owner_client, start_run


def test_a_full_queue_still_says_what_is_wrong_with_a_config_first() -> None:
    with owner_client(max_active_runs=1) as client:
        runs = [start_run(client, epochs=20) for _ in range(1 + MAX_QUEUED)]  # one training, the queue full
        assert runs[-1]["status"] == "queued" and runs[-1]["queue_position"] == MAX_QUEUED
        res = client.post("/api/runs", json={"epochs": 1, "probe_index": 10**6})
        assert res.status_code == 422 and "probe_index 1000000 is out of range" in res.json()["detail"]
        res = client.post("/api/runs", json={"epochs": 1})  # a config that can run waits its turn: no room
        assert res.status_code == 429 and "waiting for a training slot" in res.json()["detail"]
        for run in reversed(runs):
            client.post(f"/api/runs/{run['id']}/stop")
