"""WS /ws/runs/{id}: the history so far, then every event of the run as it happens."""

from __future__ import annotations

import contextlib
import logging

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from starlette.websockets import WebSocketState

from ..runs import RunManager
from ..streaming.hub import Closed, Overflow, Subscriber

router = APIRouter(tags=["stream"])
log = logging.getLogger(__name__)

CLOSE_UNKNOWN_RUN = 4404
CLOSE_TOO_SLOW = 4408
CLOSE_RUN_REMOVED = 4410  # the run was deleted or evicted while the client watched it
BAD_TEXT = "Invalid UTF-8 sequence received from client."  # what uvicorn logs, with a traceback, at ERROR


class QuietBadText(logging.Filter):
    """A text frame that is not UTF-8 is the client's mistake, not the server's: uvicorn (websockets-sansio)
    already closes such a connection with 1007, but logged an ERROR and a traceback for every frame, so any
    page could fill the log. It becomes one DEBUG line (nothing at the default level)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != BAD_TEXT:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.msg, record.args = "a WebSocket client sent a text frame that is not UTF-8; closed with 1007", ()
        record.exc_info, record.exc_text = None, None
        return True


# On uvicorn's own logger, where the record is made (the app never sees the frame): installed once, on import.
_uvicorn_errors = logging.getLogger("uvicorn.error")
if not any(isinstance(f, QuietBadText) for f in _uvicorn_errors.filters):
    _uvicorn_errors.addFilter(QuietBadText())


@router.websocket("/ws/runs/{run_id}")
async def watch(websocket: WebSocket, run_id: str) -> None:
    """Stream run `run_id`: hello, steps so far, first and latest snapshot, then live messages (docs/protocol.md)."""
    runs: RunManager = websocket.app.state.runs
    run = runs.get(run_id)
    await websocket.accept()
    if run is None:
        # A close reason has at most 123 bytes: a long id is cut, never a crash of the handler.
        shown = run_id if len(run_id) <= 40 else run_id[:40] + "…"
        await websocket.close(CLOSE_UNKNOWN_RUN, f"There is no run {shown!r}.")
        return
    await run_in_threadpool(run.record.load_frames)  # a stored run's first and latest frames, from disk
    # No await between taking the backlog and subscribing: messages numbered past the backlog come live.
    backlog, covered = run.record.backlog(run.describe())
    async with runs.hub.subscribe(run_id, backlog, covered) as sub:
        too_slow = False
        removed: Closed | None = None
        async with anyio.create_task_group() as tasks:

            async def send() -> None:
                nonlocal too_slow, removed
                try:
                    await _send(websocket, sub)
                except Overflow:
                    too_slow = True
                except Closed as exc:
                    removed = exc
                tasks.cancel_scope.cancel()

            async def drain() -> None:  # notices a client that leaves while the run is quiet
                await _drain(websocket)
                tasks.cancel_scope.cancel()

            tasks.start_soon(send)
            tasks.start_soon(drain)
        if removed is not None:
            with contextlib.suppress(RuntimeError):
                await websocket.close(removed.code, removed.reason)
        if too_slow:
            log.warning("client of run %s fell too far behind; disconnected", run_id)
            with contextlib.suppress(RuntimeError):
                await websocket.close(CLOSE_TOO_SLOW, "Too far behind: reconnect to catch up from the history.")


async def _send(websocket: WebSocket, sub: Subscriber) -> None:
    """Forward the subscriber's messages until the client goes away; raises Overflow if it falls behind."""
    try:
        while True:
            message = await sub.get()
            if isinstance(message, bytes):
                await websocket.send_bytes(message)
            else:
                await websocket.send_text(message)
    except (WebSocketDisconnect, RuntimeError):
        return


async def _drain(websocket: WebSocket) -> None:
    """Read and ignore what the client sends, until it disconnects."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive()
            if websocket.client_state is not WebSocketState.CONNECTED:
                return
