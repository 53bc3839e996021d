"""The real app under TestClient, and a real uvicorn server on a free port for socket-level tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import wait_for

# One epoch of `tiny` on mnist at batch 128: 63 steps, about a second on two cores.
QUICK: dict[str, Any] = {"dataset": "mnist", "model": "tiny", "batch_size": 128, "epochs": 1, "snapshot_every": 5}


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(max_active_runs=2))) as c:
        yield c


def start_run(client: TestClient, **overrides: Any) -> dict[str, Any]:
    """POST a run and return its JSON, failing the test on any error."""
    res = client.post("/api/runs", json={**QUICK, **overrides})
    assert res.status_code == 201, res.text
    body: dict[str, Any] = res.json()
    return body


def wait_status(client: TestClient, run_id: str, *wanted: str, timeout: float = 60) -> dict[str, Any]:
    """Poll GET /api/runs/{id} until its status is one of `wanted`."""
    box: dict[str, Any] = {}

    def check() -> bool:
        box["run"] = client.get(f"/api/runs/{run_id}").json()
        return bool(box["run"]["status"] in wanted)

    wait_for(check, timeout, interval=0.05)
    return box["run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server() -> Iterator[str]:
    """A real uvicorn server in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(Settings(max_active_runs=2)), host="127.0.0.1", port=port,
                                           log_level="warning", ws="websockets-sansio"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(20)
