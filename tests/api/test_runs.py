"""Runs over HTTP: create, read, control, and every refusal with its reason."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from filterscope.training.recorder import is_snapshot_step
from tests.api.conftest import QUICK, start_run, wait_status
from tests.conftest import wait_for


def test_a_run_trains_to_the_end_and_reports_its_history(client: TestClient) -> None:
    run = start_run(client)
    assert run["id"].startswith("r") and run["status"] in ("queued", "running")
    assert run["config"]["batch_size"] == 128 and run["total_steps"] == 63
    assert [x["name"] for x in run["layers"]] == ["conv1", "conv2"] and run["layers"][0]["fmap"] == [8, 24, 24]
    done = wait_status(client, run["id"], "finished")
    assert done["epoch"] == 1 and done["step"] == 63
    (summary,) = done["history"]
    assert set(summary) == {"epoch", "step", "train_loss", "test_loss", "test_accuracy", "lr", "wall_time",
                            "train_accuracy"}
    assert summary["test_accuracy"] > 0.85
    assert client.get("/api/runs").json()[0]["id"] == run["id"]
    snaps = client.get(f"/api/runs/{run['id']}/snapshots").json()
    assert snaps[0]["step"] == 0 and snaps[-1] == {"seq": snaps[-1]["seq"], "step": 63, "epoch": 1, "epoch_end": True}


def test_an_empty_object_uses_the_defaults_and_no_body_starts_nothing(client: TestClient) -> None:
    res = client.post("/api/runs")  # what any web page may send: refused, so it can never start a run
    assert res.status_code == 415 and "{}" in res.json()["detail"]
    res = client.post("/api/runs", json={})
    assert res.status_code == 201
    assert res.json()["config"]["model"] == "tiny" and res.json()["config"]["epochs"] == 5
    assert res.json()["config"]["init"] == "small-first" and res.json()["lr"] == 5e-3
    client.post(f"/api/runs/{res.json()['id']}/stop")


def test_a_model_named_without_a_learning_rate_gets_its_own(client: TestClient) -> None:
    """`classic` trains at Adam 2e-3 (at tiny's 5e-3 it died on shapes-color); a rate named, or another
    optimizer, is kept as said. The models list says each one's rate, for the page's form."""
    assert {m["name"]: m["lr"] for m in client.get("/api/models").json()} == \
        {"tiny": 5e-3, "lenet5": 5e-3, "classic": 2e-3}
    for body, lr in [({"model": "classic"}, 2e-3), ({"model": "classic", "lr": 0.01}, 0.01),
                     ({"model": "classic", "optimizer": "sgd"}, 5e-3), ({"model": "lenet5"}, 5e-3)]:
        res = client.post("/api/runs", json={**body, "epochs": 1, "train_subset": 100})
        assert res.status_code == 201 and res.json()["config"]["lr"] == lr, (body, res.text)
        client.post(f"/api/runs/{res.json()['id']}/stop")


@pytest.mark.parametrize(("field", "value", "words"), [
    ("lr", 0, "greater than 0"), ("lr", 50, "less than or equal to 10"), ("batch_size", 0, "greater than"),
    ("dataset", "cifar", "mnist"), ("model", "resnet", "tiny"), ("optimizer", "rmsprop", "adam"),
    ("epochs", 1000, "less than"), ("dropout", 1, "less than 1"), ("seed", -1, "greater than"),
    ("unknown_knob", 1, "Extra inputs are not permitted"), ("lr", "fast", "valid number"),
])
def test_bad_config_fields_are_422_with_a_message_per_field(client: TestClient, field: str, value: object,
                                                             words: str) -> None:
    res = client.post("/api/runs", json={field: value})
    assert res.status_code == 422
    (error,) = res.json()["detail"]
    assert error["loc"][-1] == field and words in error["msg"]


def test_a_probe_index_outside_the_test_set_is_422(client: TestClient) -> None:
    res = client.post("/api/runs", json={**QUICK, "probe_index": 99_999})
    assert res.status_code == 422 and "2000 images" in res.json()["detail"]




def test_pause_resume_step_stop_through_http(client: TestClient) -> None:
    run = start_run(client, epochs=5)
    rid = run["id"]
    wait_status(client, rid, "running")
    assert client.post(f"/api/runs/{rid}/pause").json()["status"] == "paused"
    time.sleep(0.2)
    held = client.get(f"/api/runs/{rid}").json()["step"]
    time.sleep(0.4)
    assert client.get(f"/api/runs/{rid}").json()["step"] == held
    res = client.post(f"/api/runs/{rid}/pause")
    assert res.status_code == 409 and "running" in res.json()["detail"]
    client.post(f"/api/runs/{rid}/step")
    after = wait_status(client, rid, "paused")
    wait_for(lambda: is_snapshot_step(client.get(f"/api/runs/{rid}").json()["step"], 5))
    assert after["step"] >= held
    assert client.post(f"/api/runs/{rid}/resume").json()["status"] == "running"
    assert client.post(f"/api/runs/{rid}/resume").status_code == 409
    assert client.post(f"/api/runs/{rid}/stop").status_code == 200
    stopped = wait_status(client, rid, "stopped")
    for action in ("pause", "resume", "step", "stop"):
        res = client.post(f"/api/runs/{rid}/{action}")
        assert res.status_code == 409 and "stopped" in res.json()["detail"]
    assert client.get(f"/api/runs/{rid}").json()["step"] == stopped["step"]


def test_learning_rate_and_probe_changes(client: TestClient) -> None:
    rid = start_run(client, epochs=5)["id"]
    res = client.patch(f"/api/runs/{rid}", json={"lr": 0.01})
    assert res.status_code == 200 and res.json()["lr"] == 0.01
    assert client.patch(f"/api/runs/{rid}", json={"lr": -1}).status_code == 422
    assert client.put(f"/api/runs/{rid}/probe", json={"index": 17}).status_code == 200
    res = client.put(f"/api/runs/{rid}/probe", json={"index": 2000})
    assert res.status_code == 422 and "out of range" in res.json()["detail"]
    client.post(f"/api/runs/{rid}/stop")
    wait_status(client, rid, "stopped")
    res = client.patch(f"/api/runs/{rid}", json={"lr": 0.01})
    assert res.status_code == 409 and "ended" in res.json()["detail"]


def test_unknown_runs_are_404_everywhere(client: TestClient) -> None:
    for method, path in [("get", ""), ("post", "/pause"), ("post", "/resume"), ("post", "/step"),
                         ("post", "/stop"), ("get", "/snapshots")]:
        res = client.request(method.upper(), f"/api/runs/nope{path}")
        assert res.status_code == 404 and "GET /api/runs" in res.json()["detail"], path


@pytest.mark.parametrize(("body", "status", "words"), [
    (b"{bad json", 422, "The body is not valid JSON"),
    (b"[1, 2]", 422, "must be a JSON object, not an array"),
    (b'"fast"', 422, "must be a JSON object, not a string"),
    (b"\xff\xfeaC/", 400, "could not be read"),
])
def test_a_body_that_is_not_a_json_object_gets_a_sentence(client: TestClient, body: bytes, status: int,
                                                          words: str) -> None:
    res = client.post("/api/runs", content=body, headers={"content-type": "application/json"})
    assert res.status_code == status
    detail = res.json()["detail"]
    message = detail if isinstance(detail, str) else detail[0]["msg"]
    assert words in message and '{"dataset": "mnist"' in message  # what is wrong, and what is accepted
