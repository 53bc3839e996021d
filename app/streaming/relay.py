"""From one run's engine events to frames on the hub, with the history a late client catches up from.

Frames are encoded in the training thread (where the event happens), then handed to the event loop with
`call_soon_threadsafe`. The relay's own record of what was published (steps, epochs, status, latest
snapshot) lives on the loop, so a client joining late gets a backlog that the live stream continues with
no gap and no repeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from app.streaming.codec import PROTOCOL_VERSION, encode_event, encode_snapshot
from app.streaming.hub import Hub, Message
from app.training.engine import EpochSummary, Event, StatusEvent, StepsEvent
from app.training.snapshots import Snapshot

log = logging.getLogger(__name__)


class RunRelay:
    """Publishes one run's events to the hub under the run's id."""

    def __init__(self, run_id: str, hub: Hub, loop: asyncio.AbstractEventLoop,
                 describe: Callable[[], dict[str, Any]]) -> None:
        self.run_id = run_id
        self._hub = hub
        self._loop = loop
        self._describe = describe  # the run as GET /api/runs/{id} answers, for `hello`
        self._steps: list[int] = []
        self._losses: list[float | None] = []
        self._epochs: list[dict[str, Any]] = []
        self._status: dict[str, Any] | None = None
        self.first_snapshot: bytes | None = None  # the untrained network: what "moved from its start" means
        self.latest_snapshot: bytes | None = None
        self.frames_sent = 0

    # training thread
    def on_event(self, event: Event) -> None:
        """Encode `event` and hand it to the loop; called by the engine from its thread."""
        if isinstance(event, Snapshot):
            message: Message = encode_snapshot(event)
        else:
            message = encode_event(event)
        try:
            self._loop.call_soon_threadsafe(self._deliver, event, message)
        except RuntimeError:  # the loop is closed: the server is shutting down
            log.debug("dropped %s for run %s: event loop closed", type(event).__name__, self.run_id)

    # event loop
    def _deliver(self, event: Event, message: Message) -> None:
        droppable = isinstance(event, Snapshot)
        if isinstance(event, Snapshot):
            assert isinstance(message, bytes)
            if event.seq == 0:
                self.first_snapshot = message
                droppable = False  # every client needs step 0 to compare the filters with
            self.latest_snapshot = message
        elif isinstance(event, StepsEvent):
            self._steps.extend(event.steps)
            self._losses.extend(json.loads(message)["losses"])
        elif isinstance(event, EpochSummary):
            self._epochs.append({k: v for k, v in json.loads(message).items() if k != "type"})
        elif isinstance(event, StatusEvent):
            self._status = json.loads(message)
        self.frames_sent += 1
        self._hub.publish(self.run_id, message, droppable)

    def backlog(self) -> list[tuple[Message, bool]]:
        """What a client joining now receives first: hello, every step loss, the first and the latest snapshot."""
        run = self._describe()
        run["history"] = list(self._epochs)
        if self._status is not None:
            run.update({k: self._status[k] for k in ("status", "message", "lr")})
        hello = json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "run": run}, separators=(",", ":"))
        steps = json.dumps({"type": "steps", "steps": self._steps, "losses": self._losses}, separators=(",", ":"))
        items: list[tuple[Message, bool]] = [(hello, False), (steps, False)]
        if self.first_snapshot is not None and self.first_snapshot is not self.latest_snapshot:
            items.append((self.first_snapshot, False))
        if self.latest_snapshot is not None:
            items.append((self.latest_snapshot, True))
        return items
