"""`filterscope serve` answers at once (app/boot.py): `/healthz` says "starting", the page's address a page that
says so, everything else 503 with Retry-After, while the real app loads in a thread; then the app answers all.
A start that fails is handed to the server (which says it in one line and exits)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from filterscope import __version__
from filterscope.boot import Boot
from tests.conftest import wait_for


def test_the_server_answers_while_its_app_loads_then_hands_every_request_to_it() -> None:
    gate, events, failures = threading.Event(), [], []

    def load() -> FastAPI:
        assert gate.wait(20)  # PyTorch importing, the stored runs loading

        @asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            events.append("started")
            yield
            events.append("stopped")

        app = FastAPI(lifespan=lifespan)
        app.get("/healthz")(lambda: {"status": "ok"})
        app.get("/api/runs")(lambda: [])
        return app

    with TestClient(Boot(load, failures.append)) as client:
        assert client.get("/healthz").json() == {"status": "starting", "version": __version__}
        page = client.get("/")
        assert page.status_code == 200 and "is starting" in page.text and 'http-equiv="refresh"' in page.text
        res = client.get("/api/runs")
        assert res.status_code == 503 and res.headers["retry-after"] == "1"
        assert res.json()["detail"].startswith("filterscope is starting")
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws/runs/r1"):
            pass
        assert refused.value.code == 1013  # try again later
        gate.set()
        wait_for(lambda: client.get("/healthz").json() == {"status": "ok"})
        assert client.get("/api/runs").json() == [] and events == ["started"]
    assert events == ["started", "stopped"] and failures == []


def test_an_app_that_cannot_start_is_handed_to_the_server() -> None:
    failures: list[BaseException] = []

    def load() -> FastAPI:
        raise RuntimeError("the data directory /x holds a damaged store")

    with TestClient(Boot(load, failures.append)) as client:
        wait_for(lambda: len(failures) == 1)
        assert "damaged store" in str(failures[0])
        assert client.get("/healthz").json()["status"] == "starting"  # the server is stopping meanwhile
