"""The app `filterscope serve` runs: it answers at once while the real one loads behind it.

Importing PyTorch is most of a server's start (1.5-2 s of its 2.5-5 s here), and opening the store, the shipped
run, a person's own data sets and every stored run's history is the rest. A server that answered nothing until
all of that was done looked dead for seconds. `Boot` is a plain ASGI app with nothing heavy to import: uvicorn
listens with it at once, it answers `/healthz` (`"status": "starting"`), the page's address (a page that says so
and looks again every second) and every other request (503 with `Retry-After: 1` and a sentence), while a thread
imports the app (`main.py`) and the app's own start-up runs. From then on every request goes to the app, which
answers `/healthz` with `"status": "ok"`. A start that fails (a damaged store, a Ray cluster that cannot be
joined) is said in one line and stops the server (`failure`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AsyncExitStack
from typing import Any, Protocol

from . import __version__

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
RETRY_SECONDS = 1

# The tab's icon, on the page (templates/base.html) and on the starting page: with it a browser asks for no
# /favicon.ico, whose answer (503 while starting, 404 from the app once ready) it reports as an error.
ICON = ("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 4 4'%3E%3Crect width='2' "
        "height='2' fill='%232166ac'/%3E%3Crect x='2' y='2' width='2' height='2' fill='%23b2182b'/%3E%3Crect x='2' "
        "width='2' height='2' fill='%23f7f7f7'/%3E%3Crect y='2' width='2' height='2' fill='%23d1e5f0'/%3E%3C/svg%3E")
STARTING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="1"><title>filterscope: starting</title>
<link rel="icon" href="{icon}">
<style>body{font:16px system-ui,sans-serif;background:#111;color:#ddd;display:grid;place-items:center;height:90vh}
</style></head>
<body><p>filterscope is starting: loading PyTorch and the stored runs. This page opens by itself in a moment.</p>
</body></html>
""".replace("{icon}", ICON)


def _resume_gc() -> None:
    """Turn the cyclic GC back on where `serve` paused it for the start-up, first moving everything loaded so far
    (modules, the runs' histories) out of its scans for good (gc.freeze)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


class App(Protocol):
    """An ASGI app with a Starlette router's lifespan (the FastAPI app of main.py)."""

    router: Any

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class Boot:
    """An ASGI app that answers while `load()` (in a thread) builds the real one and its lifespan starts it."""

    def __init__(self, load: Callable[[], App], failed: Callable[[BaseException], None]) -> None:
        self._load, self._failed = load, failed
        self.app: App | None = None  # the real app, once started
        self._stack = AsyncExitStack()
        self._starting: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await self._starting_answer(scope, send)
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect; closed before accepting: the client sees it refused
            await send({"type": "websocket.close", "code": 1013, "reason": "starting"})  # 1013: try again later

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup: uvicorn listens as soon as it is answered
        self._starting = asyncio.create_task(self._start())
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await self._starting  # an import under way cannot be cut short; the app then stops as it would
        except Exception:  # noqa: BLE001  # said once already, by _start
            pass
        try:
            await self._stack.aclose()
        finally:
            await send({"type": "lifespan.shutdown.complete"})

    async def _start(self) -> None:
        try:
            app = await asyncio.to_thread(self._load)
            await self._stack.enter_async_context(app.router.lifespan_context(app))
        except BaseException as exc:
            _resume_gc()
            self._failed(exc)
            raise
        self.app = app
        _resume_gc()
        log.info("ready: the app answers every request")

    @staticmethod
    async def _starting_answer(scope: Scope, send: Send) -> None:
        path, method = scope.get("path", ""), scope.get("method", "GET")
        headers = [(b"cache-control", b"no-store")]
        if path == "/healthz":
            status, body, kind = 200, json.dumps({"status": "starting", "version": __version__}), b"application/json"
        elif path == "/" and method in ("GET", "HEAD"):
            status, body, kind = 200, STARTING_PAGE, b"text/html; charset=utf-8"
        else:
            status, kind = 503, b"application/json"
            body = json.dumps({"detail": "filterscope is starting (loading PyTorch and the stored runs); ask again "
                                         f"in {RETRY_SECONDS} s."})
            headers.append((b"retry-after", str(RETRY_SECONDS).encode()))
        data = body.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", kind), (b"content-length", str(len(data)).encode()), *headers]})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else data})
