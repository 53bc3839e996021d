"""The real app under TestClient, and a real uvicorn server on a free port for socket-level tests."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from filterscope.config import Settings
from filterscope.main import create_app
from tests.conftest import wait_for

# One epoch of `tiny` on mnist at batch 128: 63 steps, about a second on two cores.
QUICK: dict[str, Any] = {"dataset": "mnist", "model": "tiny", "batch_size": 128, "epochs": 1, "snapshot_every": 5}


RUN_PATH = re.compile(r"^/api/runs/([^/?]+)")


class LocalClient(TestClient):
    """TestClient as a browser on this machine talks to the server: its Host is 127.0.0.1, not 'testserver'."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, base_url="http://127.0.0.1", **kwargs)

    def websocket_connect(self, url: str, *args: Any, **kwargs: Any) -> Any:
        return super().websocket_connect(f"ws://127.0.0.1{url}" if url.startswith("/") else url, *args, **kwargs)


class OwnerClient(LocalClient):
    """The real app as the person who starts runs uses it: every request about a run this client created
    carries that run's control token (as the page does from localStorage)."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.tokens: dict[str, str] = {}

    def request(self, method: str, url: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        found = RUN_PATH.match(str(url))
        if found and found.group(1) in self.tokens:
            kwargs["headers"] = {"Authorization": f"Bearer {self.tokens[found.group(1)]}", **(kwargs.get("headers")
                                                                                             or {})}
        res = super().request(method, url, **kwargs)
        if method.upper() == "POST" and str(url).rstrip("/") == "/api/runs" and res.status_code == 201:
            self.tokens[res.json()["id"]] = res.json()["token"]
        return res


def owner_client(**settings: Any) -> OwnerClient:
    """An OwnerClient of a fresh app with these settings (use it as a context manager)."""
    return OwnerClient(create_app(Settings(**settings)))


@pytest.fixture
def client() -> Iterator[OwnerClient]:
    with owner_client(max_active_runs=2) as c:
        yield c


# A run with a history and little else: 512 images, 2 epochs of 16 steps, a snapshot every 5 after the dense start
# (17 snapshots), analyses at step 0 and both epoch ends. About a second of training.
SMALL: dict[str, Any] = {**QUICK, "train_subset": 512, "batch_size": 32, "epochs": 2}


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OwnerClient, dict[str, Any]]]:
    """One SMALL run trained to the end once per session, in an app of its own (own data directory, default
    limits), with that app's owner client: for tests that only read a finished run. Never change it or add to it."""
    with owner_client(data_dir=tmp_path_factory.mktemp("finished-run")) as client:
        run = start_run(client, **SMALL)
        yield client, wait_status(client, run["id"], "finished")


@pytest.fixture
def make_client() -> Callable[..., OwnerClient]:
    """owner_client, for tests that need other settings."""
    return owner_client


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


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """A real uvicorn server of a fresh app in a thread; yields its address (host:port)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", ws="websockets-sansio"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture
def live_server() -> Iterator[str]:
    """A real uvicorn server in a thread; yields its base URL."""
    with serving(Settings(max_active_runs=2)) as base:
        yield base
