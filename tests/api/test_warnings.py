"""Warnings, update ratios and learning-rate changes through the real app: in the run answer, on the socket,
and kept across a restart; the model description says which layers are pooled."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import OwnerClient, owner_client, start_run, wait_status
from tests.api.test_ws import read_until
from tests.conftest import wait_for


def test_a_dying_run_warns_on_the_socket_and_in_its_answer_and_keeps_it_across_a_restart() -> None:
    with owner_client() as client:
        # small initial weights in every layer: at SGD lr 1 its ReLUs die (from the default init it explodes)
        run = start_run(client, optimizer="sgd", lr=1.0, epochs=1, batch_size=32, init="small")
        with client.websocket_connect(f"/ws/runs/{run['id']}") as ws:
            messages = read_until(ws, lambda m: isinstance(m, dict) and m["type"] == "status"
                                  and m["status"] == "finished")
        pushed = [m for m in messages if isinstance(m, dict) and m["type"] == "warning"]
        assert pushed and all("learning rate 1 is too high for SGD" in m["message"] for m in pushed)
        done = client.get(f"/api/runs/{run['id']}").json()
        assert [(w["kind"], w["step"], w["message"]) for w in done["warnings"]] == \
            [(m["kind"], m["step"], m["message"]) for m in pushed]
    with owner_client() as again:  # a new app on the same data directory
        assert again.get(f"/api/runs/{run['id']}").json()["warnings"] == done["warnings"]
        with again.websocket_connect(f"/ws/runs/{run['id']}") as ws:
            hello = ws.receive_json()
        assert hello["run"]["warnings"] == done["warnings"]


def test_steps_carry_each_layers_update_ratio_and_the_backlog_has_them_all(client: OwnerClient) -> None:
    run = start_run(client, epochs=1, batch_size=256)
    wait_status(client, run["id"], "finished")
    with client.websocket_connect(f"/ws/runs/{run['id']}") as ws:
        ws.receive_json()  # hello
        steps = ws.receive_json()
    assert steps["type"] == "steps" and set(steps["ratios"]) == {"conv1", "conv2"}
    assert all(len(v) == len(steps["steps"]) == 32 for v in steps["ratios"].values())
    assert all(r is not None and 0 < r < 10 for v in steps["ratios"].values() for r in v)


def test_a_learning_rate_set_by_hand_is_listed_with_the_step_it_applies_after(client: OwnerClient) -> None:
    run = start_run(client, epochs=5)
    rid = run["id"]
    assert client.post(f"/api/runs/{rid}/pause").status_code == 200
    paused = wait_status(client, rid, "paused")
    assert paused["lr_changes"] == []
    assert client.patch(f"/api/runs/{rid}", json={"lr": 0.0123}).status_code == 200
    wait_for(lambda: client.get(f"/api/runs/{rid}").json()["lr_changes"] != [])
    held = client.get(f"/api/runs/{rid}").json()
    assert held["lr_changes"] == [{"step": paused["step"], "lr": 0.0123}] and held["lr"] == 0.0123
    client.post(f"/api/runs/{rid}/stop")
    stopped = wait_status(client, rid, "stopped")
    assert stopped["lr_changes"] == [{"step": paused["step"], "lr": 0.0123}]  # kept once the run has ended


def test_a_train_subset_larger_than_the_data_set_gets_a_sentence(client: TestClient) -> None:
    res = client.post("/api/runs", json={"train_subset": 50_000})
    assert res.status_code == 422
    assert "train_subset 50000 is larger than the mnist training set (8000 images)" in res.json()["detail"]


def test_models_say_which_layers_are_followed_by_pooling(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/api/models").json()}
    pools = [layer["pool"] for layer in models["classic"]["layers"]]
    assert pools == [{"kind": "max", "size": 2, "stride": 2}] * 2 + [None]
