"""The run queue: past the training cap runs wait as `queued`, in order, start when a slot frees, can be
cancelled, and still wait after a restart."""

from __future__ import annotations

import threading

import pytest
from starlette.websockets import WebSocketDisconnect

from filterscope.runs.local import LocalRun
from tests.api.conftest import QUICK, owner_client, start_run, wait_status

LONG = {**QUICK, "epochs": 20}


def test_runs_past_the_cap_wait_in_order_and_start_as_slots_free() -> None:
    with owner_client(max_active_runs=1) as client:
        first = start_run(client, **LONG)
        second = client.post("/api/runs", json=QUICK).json()
        third = client.post("/api/runs", json=QUICK).json()
        assert (second["status"], second["queue_position"]) == ("queued", 1)
        assert (third["status"], third["queue_position"]) == ("queued", 2)
        assert first["queue_position"] is None
        # Waiting, a run has not trained: nothing to pause; the answer says where it stands and how to cancel
        res = client.post(f"/api/runs/{third['id']}/pause")
        assert res.status_code == 409 and "waits in the queue (2nd in line)" in res.json()["detail"]
        assert client.patch(f"/api/runs/{third['id']}", json={"lr": 0.002}).status_code == 409
        client.post(f"/api/runs/{first['id']}/stop")
        wait_status(client, second["id"], "running", "finished")  # the next in line took the freed slot
        assert client.get(f"/api/runs/{third['id']}").json()["queue_position"] == 1
        done = wait_status(client, third["id"], "finished", timeout=120)  # and then the one after it
        assert done["step"] == done["total_steps"] and done["snapshots"] > 10
        second_done = client.get(f"/api/runs/{second['id']}").json()
        assert second_done["status"] == "finished" and second_done["created_at"] < done["created_at"]


def test_a_queued_run_can_be_cancelled_and_never_trains() -> None:
    with owner_client(max_active_runs=1) as client:
        first = start_run(client, **LONG)
        waiting = client.post("/api/runs", json=QUICK).json()
        after = client.post("/api/runs", json=QUICK).json()
        res = client.post(f"/api/runs/{waiting['id']}/stop")
        assert res.status_code == 200 and res.json()["status"] == "stopped" and res.json()["step"] == 0
        assert client.get(f"/api/runs/{after['id']}").json()["queue_position"] == 1  # it moved up
        client.post(f"/api/runs/{first['id']}/stop")
        wait_status(client, after["id"], "finished", timeout=120)
        cancelled = client.get(f"/api/runs/{waiting['id']}").json()
        assert cancelled["status"] == "stopped" and cancelled["step"] == 0 and cancelled["snapshots"] == 0


def test_queued_runs_still_wait_after_a_restart_and_then_train() -> None:
    with owner_client(max_active_runs=1) as client:
        first = start_run(client, **LONG)
        waiting = client.post("/api/runs", json=QUICK).json()
        assert waiting["status"] == "queued"
    # The server went away with one run training and one waiting: the first is interrupted, the second waits
    # (it had not trained, so there is nothing to resume) and takes the free slot at start-up.
    with owner_client(max_active_runs=1) as again:
        assert again.get(f"/api/runs/{first['id']}").json()["status"] == "interrupted"
        done = wait_status(again, waiting["id"], "finished", timeout=120)
        assert done["step"] == done["total_steps"]


def test_a_run_that_says_queued_but_has_trained_comes_back_interrupted_not_from_scratch() -> None:
    # A resumed run says `queued` for the moment before its thread starts: a crash then must not make it a
    # fresh run that trains from step 0 over its own history.
    with owner_client() as client:
        run = start_run(client, **QUICK)
        done = wait_status(client, run["id"], "finished")
        manager = client.app.state.runs  # type: ignore[attr-defined]
        record = manager.get(run["id"]).record
        manager.store.set_state(run["id"], {**record.state, "status": "queued"})
        manager.store.flush()
    with owner_client() as again:
        back = again.get(f"/api/runs/{run['id']}").json()
        assert back["status"] == "interrupted" and back["snapshots"] == done["snapshots"]


def test_a_queued_run_that_cannot_start_fails_on_every_page_watching_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with owner_client(max_active_runs=1) as client:
        start_run(client, **LONG)
        waiting = client.post("/api/runs", json=QUICK).json()

    # After the restart the waiting run gets its training thread when the free slot is handed out: make that fail.
    joined = threading.Event()

    def broken(*_args: object, **_kwargs: object) -> None:
        joined.wait(20)  # the page below has joined: it must hear of the failure live
        raise RuntimeError("the data set's files are gone")

    monkeypatch.setattr(LocalRun, "__init__", broken)
    with owner_client(max_active_runs=1) as again, again.websocket_connect(f"/ws/runs/{waiting['id']}") as ws:
        assert ws.receive_json()["run"]["status"] == "queued"  # hello: the run as it stands now, still waiting
        joined.set()
        run = wait_status(again, waiting["id"], "failed")
        assert "could not start: RuntimeError: the data set's files are gone" in run["message"]
        # Deleting it closes the page's socket (4410), so what the page was sent before is all there is to read.
        again.delete(f"/api/runs/{waiting['id']}", headers={"Authorization": f"Bearer {client.tokens[waiting['id']]}"})
        statuses = []
        with pytest.raises(WebSocketDisconnect):
            while True:
                message = ws.receive_json()
                if message["type"] == "status":
                    statuses.append((message["status"], message["message"]))
        assert statuses == [("failed", run["message"])]
