"""Attacks a web page the user visits could make on the server: rebinding, cross-origin posts and sockets."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.api.conftest import QUICK

EVIL = "http://evil.example"


def test_a_rebinding_host_is_refused(client: TestClient) -> None:
    # A DNS-rebinding page reaches 127.0.0.1 under its own name: the Host header says which.
    for path in ("/", "/api/runs", "/healthz"):
        res = client.get(path, headers={"Host": "evil.example"})
        assert res.status_code == 400, path
        assert "host name" in res.json()["detail"]
    res = client.post("/api/runs", json=QUICK, headers={"Host": "evil.example:8000"})
    assert res.status_code == 400
    assert client.get("/api/runs").json() == []


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "localhost"])
def test_local_names_are_served(client: TestClient, host: str) -> None:
    assert client.get("/healthz", headers={"Host": host}).status_code == 200


def test_allowed_hosts_extend_the_list(make_client: Any) -> None:
    with make_client(allowed_hosts=["lab.example"]) as c:
        assert c.get("/healthz", headers={"Host": "lab.example:8000"}).status_code == 200
        assert c.get("/healthz", headers={"Host": "other.example"}).status_code == 400


@pytest.mark.parametrize(("content_type", "body"), [
    ("text/plain", b'{"epochs": 1}'), ("application/x-www-form-urlencoded", b"epochs=1"),
    ("multipart/form-data; boundary=x", b"--x--"), (None, b""),
])
def test_simple_cross_site_posts_never_start_a_run(client: TestClient, content_type: str | None,
                                                   body: bytes) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    res = client.post("/api/runs", content=body, headers=headers)
    assert res.status_code == 415, res.text
    assert "application/json" in res.json()["detail"]
    assert client.get("/api/runs").json() == []


def test_a_foreign_origin_cannot_change_anything(client: TestClient) -> None:
    res = client.post("/api/runs", json=QUICK, headers={"Origin": EVIL})
    assert res.status_code == 403 and "evil.example" in res.json()["detail"]
    assert client.get("/api/runs").json() == []
    run = client.post("/api/runs", json={**QUICK, "epochs": 20}).json()
    for path in ("pause", "stop", "step"):
        res = client.post(f"/api/runs/{run['id']}/{path}", headers={"Origin": EVIL, "Content-Type": "text/plain"})
        assert res.status_code == 403
    assert client.get(f"/api/runs/{run['id']}").json()["status"] in ("queued", "running")


def test_the_page_itself_may(client: TestClient) -> None:
    res = client.post("/api/runs", json=QUICK, headers={"Origin": "http://127.0.0.1"})
    assert res.status_code == 201


def test_a_foreign_origin_cannot_watch(client: TestClient) -> None:
    run = client.post("/api/runs", json=QUICK).json()
    with pytest.raises(WebSocketDisconnect), \
            client.websocket_connect(f"/ws/runs/{run['id']}", headers={"Origin": EVIL}) as ws:
        ws.receive_text()
    with client.websocket_connect(f"/ws/runs/{run['id']}", headers={"Origin": "http://127.0.0.1"}) as ws:
        assert ws.receive_json()["type"] == "hello"
