"""The stream: real frames decoded and checked against the model, late joins, many and stuck clients."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.sync.client import connect

from filterscope.streaming.codec import decode_frame
from tests.api.conftest import start_run


def read_until(ws: Any, predicate: Any, limit: int = 5000) -> list[Any]:
    """Messages (dicts for text, (header, arrays) for binary) up to and including the first matching one."""
    out = []
    for _ in range(limit):
        msg = ws.receive()
        item = json.loads(msg["text"]) if msg.get("text") is not None else decode_frame(msg["bytes"])
        out.append(item)
        if predicate(item):
            return out
    raise AssertionError("message never came")


def is_status(*names: str) -> Any:
    return lambda m: isinstance(m, dict) and m["type"] == "status" and m["status"] in names


def test_frames_decode_and_match_the_model(client: TestClient) -> None:
    run = start_run(client, model="classic", batch_size=256, snapshot_every=4)
    with client.websocket_connect(f"/ws/runs/{run['id']}") as ws:
        messages = read_until(ws, is_status("finished"))
    hello = messages[0]
    assert hello["type"] == "hello" and hello["v"] == 2 and hello["run"]["id"] == run["id"]
    snaps = [m for m in messages if isinstance(m, tuple)]
    assert len(snaps) >= 5
    geometry = {x["name"]: x for x in run["layers"]}
    for header, arrays in snaps:
        assert [layer["name"] for layer in header["layers"]] == ["conv1", "conv2", "conv3"]
        for i, layer in enumerate(header["layers"]):
            g = geometry[layer["name"]]
            kernel = (g["out_channels"], g["in_channels"], *g["kernel"])
            for key in ("weight", "grad", "update"):
                assert arrays[f"layers.{i}.{key}"].shape == kernel
            assert arrays[f"layers.{i}.fmap"].shape == tuple(g["fmap"])
            # conv3 has no pooling after it and every conv a ReLU: the map shown is the pre-activation's positive part
            np.testing.assert_array_equal(arrays[f"layers.{i}.fmap"], np.maximum(arrays[f"layers.{i}.preact"], 0))
            assert arrays[f"layers.{i}.preact"].shape == tuple(g["fmap"])
        assert arrays["probe.pixels"].shape == (1, 28, 28)
        assert abs(sum(header["probe"]["probs"]) - 1) < 1e-3
    steps = [s for m in messages if isinstance(m, dict) and m["type"] == "steps" for s in m["steps"]]
    assert steps == list(range(1, 33))  # 8000 / 256 = 32 batches, each reported once
    epochs = [m for m in messages if isinstance(m, dict) and m["type"] == "epoch"]
    history = client.get(f"/api/runs/{run['id']}").json()["history"]
    assert [e["epoch"] for e in epochs] == [1] and epochs[0]["test_accuracy"] == history[0]["test_accuracy"] > 0.5
    seqs = [h["seq"] for h, _ in snaps]
    assert seqs == sorted(seqs)
    assert snaps[-1][0]["epoch_end"] and snaps[-1][0]["step"] == 32


def test_a_late_client_gets_the_history_first(finished_run: tuple[TestClient, dict[str, Any]]) -> None:
    client, done = finished_run
    run = done
    with client.websocket_connect(f"/ws/runs/{run['id']}") as ws:
        hello = ws.receive_json()
        steps = ws.receive_json()
        first, first_arrays = decode_frame(ws.receive_bytes())
        header, arrays = decode_frame(ws.receive_bytes())
    assert hello["run"]["status"] == "finished"
    # step 0 comes first, so the page can show how far every filter moved from its start
    assert (first["seq"], first["step"]) == (0, 0)
    assert first["layers"][0]["measures"]["cosine_to_start"] == 1.0
    assert header["layers"][0]["measures"]["cosine_to_start"] < 1.0
    assert header["layers"][0]["peaks"]["weight"] >= first["layers"][0]["peaks"]["weight"]
    assert hello["run"]["history"] == done["history"]
    total = done["total_steps"]
    assert steps["type"] == "steps" and steps["steps"] == list(range(1, total + 1)) and len(steps["losses"]) == total
    assert header["epoch_end"] and header["step"] == total
    assert arrays["layers.0.weight"].shape == (8, 1, 5, 5)


def test_two_clients_see_the_same_run(client: TestClient) -> None:
    run = start_run(client, epochs=2)
    with client.websocket_connect(f"/ws/runs/{run['id']}") as a, \
         client.websocket_connect(f"/ws/runs/{run['id']}") as b:
        got_a = read_until(a, is_status("finished"))
        got_b = read_until(b, is_status("finished"))

    def summary(messages: list[Any]) -> list[Any]:
        return [m["epoch"] for m in messages if isinstance(m, dict) and m["type"] == "epoch"]

    assert summary(got_a) == summary(got_b) == [1, 2]
    assert got_a[-1] == got_b[-1]


def test_control_changes_reach_the_socket(client: TestClient) -> None:
    run = start_run(client, epochs=5)
    with client.websocket_connect(f"/ws/runs/{run['id']}") as ws:
        client.post(f"/api/runs/{run['id']}/pause")
        read_until(ws, is_status("paused"))
        client.put(f"/api/runs/{run['id']}/probe", json={"index": 5})
        fresh = read_until(ws, lambda m: isinstance(m, tuple) and m[0]["probe"]["index"] == 5)
        assert fresh[-1][0]["probe"]["source"] == "test"
        client.post(f"/api/runs/{run['id']}/stop")
        read_until(ws, is_status("stopped"))


def test_an_unknown_run_closes_with_4404(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/ws/runs/nope") as ws:
        ws.receive_text()
    assert info.value.code == 4404


def test_a_client_that_never_reads_does_not_stall_training(live_server: str) -> None:
    base = f"http://{live_server}"
    # 2 x 16 batches, each with a ~300 KB snapshot: ~10 MB, far more than the stuck socket's buffers hold
    run = httpx.post(f"{base}/api/runs", json={"dataset": "mnist", "batch_size": 64, "epochs": 2, "train_subset": 1024,
                                                "snapshot_every": 1, "model": "classic"}).json()
    # A raw socket that completes the handshake and then never reads a byte: the server's sends back up.
    stuck = socket.create_connection(("127.0.0.1", int(live_server.split(":")[1])))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall((f"GET /ws/runs/{run['id']} HTTP/1.1\r\nHost: {live_server}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    try:
        with connect(f"ws://{live_server}/ws/runs/{run['id']}", max_size=None) as reader:
            epochs = []
            while True:
                raw = reader.recv(timeout=120)
                if isinstance(raw, str):
                    msg = json.loads(raw)
                    if msg["type"] == "epoch":
                        epochs.append(msg["epoch"])
                    if msg["type"] == "status" and msg["status"] == "finished":
                        break
        assert epochs == [1, 2]
        final = httpx.get(f"{base}/api/runs/{run['id']}").json()
        assert final["status"] == "finished"
        # Every batch made a snapshot the stuck client could not take, and training went on to the end anyway
        # (stalled would mean the reader waiting past its 120 s timeout).
        assert final["step"] == final["total_steps"] == 32
    finally:
        stuck.close()
