"""WS /ws/runs/{id}: the history so far, then every event of the run as it happens."""

from __future__ import annotations

import contextlib
import logging

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from app.runs import RunManager
from app.streaming.hub import Overflow, Subscriber

router = APIRouter(tags=["stream"])
log = logging.getLogger(__name__)

CLOSE_UNKNOWN_RUN = 4404
CLOSE_TOO_SLOW = 4408


@router.websocket("/ws/runs/{run_id}")
async def watch(websocket: WebSocket, run_id: str) -> None:
    """Stream run `run_id`: hello, steps so far, latest snapshot, then live messages (docs/protocol.md)."""
    runs: RunManager = websocket.app.state.runs
    run = runs.get(run_id)
    await websocket.accept()
    if run is None:
        await websocket.close(CLOSE_UNKNOWN_RUN, f"There is no run {run_id!r}.")
        return
    # No await between taking the backlog and subscribing: nothing published can fall between them.
    async with run.hub.subscribe(run_id, run.relay.backlog()) as sub:
        too_slow = False
        async with anyio.create_task_group() as tasks:

            async def send() -> None:
                nonlocal too_slow
                try:
                    await _send(websocket, sub)
                except Overflow:
                    too_slow = True
                tasks.cancel_scope.cancel()

            async def drain() -> None:  # notices a client that leaves while the run is quiet
                await _drain(websocket)
                tasks.cancel_scope.cancel()

            tasks.start_soon(send)
            tasks.start_soon(drain)
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
