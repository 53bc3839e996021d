"""What each filter detects, through the real app: the top patches of an analysed snapshot, the refusals, the
socket's word that an analysis is stored, and the same answers after the store is reopened."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tests.api.conftest import SMALL, OwnerClient, owner_client, start_run, wait_status


def test_every_analysed_snapshot_answers_each_layers_top_patches(
        finished_run: tuple[OwnerClient, dict[str, Any]]) -> None:
    client, run = finished_run
    refs = client.get(f"/api/runs/{run['id']}/snapshots").json()
    ends = [r["seq"] for r in refs if r["epoch_end"]]
    assert run["analyses"] == [0, *ends] and len(ends) == run["config"]["epochs"]
    assert run["analysis_seconds"] < run["elapsed"]
    for layer in run["layers"]:
        res = client.get(f"/api/runs/{run['id']}/snapshots/{ends[-1]}/top/{layer['name']}")
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["layer"] == layer["name"] and body["seq"] == ends[-1] and body["step"] == run["step"]
        assert [f["filter"] for f in body["filters"]] == list(range(layer["out_channels"]))
        assert body["dead"] == sum(f["dead"] for f in body["filters"])
        for f in body["filters"]:
            assert len(f["patches"]) <= 9 and (f["dead"] == (not f["patches"]))
            values = [p["activation"] for p in f["patches"]]
            assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
            assert len({p["index"] for p in f["patches"]}) == len(f["patches"])  # distinct images
            for p in f["patches"]:
                y0, x0, y1, x1 = p["box"]
                assert 0 <= y0 < y1 <= 28 and 0 <= x0 < x1 <= 28 and 0 <= p["index"] < 2000
                assert y1 - y0 <= body["receptive_field"] and x1 - x0 <= body["receptive_field"]
    first = client.get(f"/api/runs/{run['id']}/snapshots/0/top/conv1").json()
    assert first["step"] == 0 and first["epoch"] == 0


def test_refusals_say_what_exists(finished_run: tuple[OwnerClient, dict[str, Any]]) -> None:
    client, run = finished_run
    res = client.get(f"/api/runs/{run['id']}/snapshots/1/top/conv1")  # a snapshot after batch 1: none
    assert res.status_code == 404 and "no filter analysis" in res.json()["detail"]
    assert str(run["analyses"][-1]) in res.json()["detail"]
    res = client.get(f"/api/runs/{run['id']}/snapshots/0/top/fc1")
    assert res.status_code == 404 and "conv1, conv2" in res.json()["detail"]
    assert client.get("/api/runs/nope/snapshots/0/top/conv1").status_code == 404
    assert client.get(f"/api/runs/{run['id']}/snapshots/-1/top/conv1").status_code == 422


def test_the_socket_says_when_an_analysis_is_stored(client: OwnerClient) -> None:
    run_id = start_run(client, **SMALL)["id"]
    said = []
    with client.websocket_connect(f"/ws/runs/{run_id}") as ws:
        while True:  # every message up to `finished`, which follows the last analysis
            message = ws.receive()
            text = message.get("text")
            if text and '"type":"analysis"' in text:
                said.append(json.loads(text))
            if text and '"status":"finished"' in text:
                break
    run = client.get(f"/api/runs/{run_id}").json()
    assert said and said[-1]["seq"] == run["analyses"][-1] and said[-1]["step"] == run["step"]
    assert said[-1]["analysis_seconds"] == run["analysis_seconds"]
    with client.websocket_connect(f"/ws/runs/{run_id}") as ws:
        hello = ws.receive_json()
    assert hello["run"]["analyses"] == run["analyses"]
    assert hello["run"]["analysis_seconds"] == run["analysis_seconds"]


def test_the_test_set_pixels_come_in_one_answer(client: OwnerClient) -> None:
    res = client.get("/api/datasets/mnist/test.u8")
    assert res.status_code == 200 and res.headers["x-shape"] == "2000,1,28,28"
    pixels = np.frombuffer(res.content, np.uint8).reshape(2000, 1, 28, 28)
    assert pixels.max() == 255
    assert client.get("/api/datasets/nope/test.u8").status_code == 404


def test_analyses_survive_a_reopened_store(data_dir: Path) -> None:
    with owner_client() as first:
        run = wait_status(first, start_run(first, **SMALL)["id"], "finished")
        before = {seq: first.get(f"/api/runs/{run['id']}/snapshots/{seq}/top/conv2").json()
                  for seq in run["analyses"]}
    with owner_client() as second:
        again = second.get(f"/api/runs/{run['id']}").json()
        assert again["analyses"] == run["analyses"] and again["analysis_seconds"] == run["analysis_seconds"]
        for seq, body in before.items():
            assert second.get(f"/api/runs/{run['id']}/snapshots/{seq}/top/conv2").json() == body
        res = second.delete(f"/api/runs/{run['id']}", headers={"Authorization": f"Bearer {first.tokens[run['id']]}"})
        assert res.status_code == 204
        assert second.get(f"/api/runs/{run['id']}/snapshots/0/top/conv2").status_code == 404
