"""Fan-out of messages to WebSocket clients, each with its own bounded queue (after encode/broadcaster).

Everything here runs on the event loop thread. Publishing never waits for a client: a slow client's queue
keeps at most `max_snapshots` snapshot frames (older ones are dropped, the newest always survives), while
summaries, step losses and status changes are never dropped. A client so far behind that those pile up past
`max_messages` is cut off, and catches up from the history when it reconnects.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

Message = str | bytes  # text frames are JSON; binary frames are snapshots


class Overflow(Exception):
    """The subscriber fell too far behind and was cut off."""


class Closed(Exception):
    """The topic was closed (its run deleted or evicted): `code` and `reason` for the client."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class Subscriber:
    """One client's queue."""

    def __init__(self, max_snapshots: int = 2, max_messages: int = 5000, after: int = 0) -> None:
        self.after = after  # messages numbered up to this came in the backlog: skip them when published
        self._queue: deque[tuple[Message, bool]] = deque()  # (message, droppable)
        self._droppable = 0
        self._max_snapshots = max_snapshots
        self._max_messages = max_messages
        self._ready = asyncio.Event()
        self.dropped = 0  # snapshots skipped because the client was behind
        self.overflowed = False
        self.closed: Closed | None = None

    def push(self, message: Message, droppable: bool) -> None:
        """Queue `message`; never blocks."""
        if self.overflowed:
            return
        if droppable and self._droppable >= self._max_snapshots:
            self._drop_oldest_snapshot()
        self._queue.append((message, droppable))
        self._droppable += droppable
        if len(self._queue) > self._max_messages:
            self.overflowed = True
            self._queue.clear()
        self._ready.set()

    def _drop_oldest_snapshot(self) -> None:
        for i, (_, droppable) in enumerate(self._queue):
            if droppable:
                del self._queue[i]
                self._droppable -= 1
                self.dropped += 1
                return

    def close(self, closed: Closed) -> None:
        """Deliver what is queued, then raise `closed` from get()."""
        self.closed = closed
        self._ready.set()

    async def get(self) -> Message:
        """The next message, waiting if there is none; raises Overflow once cut off, Closed once closed."""
        while not self._queue:
            if self.overflowed:
                raise Overflow
            if self.closed is not None:
                raise self.closed
            self._ready.clear()
            await self._ready.wait()
        message, droppable = self._queue.popleft()
        self._droppable -= droppable
        return message

    def __len__(self) -> int:
        return len(self._queue)


class Hub:
    """Topics (run ids) to their subscribers."""

    def __init__(self, max_snapshots: int = 2, max_messages: int = 5000) -> None:
        self._topics: dict[str, set[Subscriber]] = {}
        self._max_snapshots = max_snapshots
        self._max_messages = max_messages

    def publish(self, topic: str, message: Message, droppable: bool = False, n: int = 0) -> None:
        """Give `message` (numbered `n` in its topic, 0 if unnumbered) to every subscriber of `topic`."""
        for sub in self._topics.get(topic, ()):
            if n == 0 or n > sub.after:
                sub.push(message, droppable)

    @asynccontextmanager
    async def subscribe(self, topic: str, backlog: list[tuple[Message, bool]] | None = None, after: int = 0,
                        ) -> AsyncIterator[Subscriber]:
        """Subscribe to `topic`, with `backlog` (covering messages up to number `after`) queued first;
        unsubscribed however the block ends."""
        sub = Subscriber(self._max_snapshots, self._max_messages, after)
        for message, droppable in backlog or ():
            sub.push(message, droppable)
        self._topics.setdefault(topic, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._topics.get(topic)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._topics[topic]

    def close(self, topic: str, code: int, reason: str) -> None:
        """Tell every subscriber of `topic` that it is gone (they leave once their queue is sent)."""
        for sub in self._topics.get(topic, ()):
            sub.close(Closed(code, reason))

    def count(self, topic: str) -> int:
        """How many clients watch `topic`."""
        return len(self._topics.get(topic, ()))
