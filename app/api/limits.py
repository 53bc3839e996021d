"""How many exports are made at once: as many as there are export processes for the whole server, one per
client, and a 429 with `Retry-After` past that.

An export (weights.npz, filters.gif, one filter's trajectory) reads every frame of a run, and anyone with the
link may ask for one: eight at once of a long run took a training run down to 0.08 of its speed (issue 21).
Builds run in the low-priority export processes (app/background.py); a request that would have to queue behind
them is answered at once instead, so neither waiting requests nor their memory pile up. A request for an
export of an ended run that is already being made waits for that one (taking no slot) and is sent the kept file.

Sending a kept export costs the server's own CPU (the event loop copies every byte): eight clients fetching
kept exports in a loop sent 95 MB/s and held training to 0.17-0.34 of its speed. All export answers together
are paced to SEND_RATE instead (Pace), which still sends the 68 MB npz of a long `classic` run in ~2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any, TypeVar

from fastapi import HTTPException

from ..background import LowPriorityProcesses

T = TypeVar("T")

PER_CLIENT = 1  # one export at a time for each client address: eight tabs of one person share one slot
# What a refused client is told to wait: a GIF of a 1,251-snapshot run takes ~1.5 s of a free core and its npz
# ~3 s (longer while training takes the CPU); asking again costs the server next to nothing.
RETRY_SECONDS = 2
SEND_RATE = 32 * 1024 * 1024  # bytes a second of export answers, all clients together


class Builds:
    """The export builds under way: at most the pool's workers in all, `per_client` for each client address
    (any thread, any event loop: the counts are taken under a lock, and given back when the work ends)."""

    def __init__(self, pool: LowPriorityProcesses, per_client: int = PER_CLIENT) -> None:
        self.pool = pool
        self.total = pool.workers
        self.per_client = per_client
        self._lock = threading.RLock()  # re-entered when a build ends before its callback is added
        self._clients: Counter[str] = Counter()
        self._jobs: dict[Hashable, Future[Any]] = {}  # of ended runs, by (run, key, name)

    @property
    def running(self) -> int:
        with self._lock:
            return sum(self._clients.values())

    async def joined(self, job: Hashable) -> bool:
        """Wait for `job` if it is being made (for another request); True if it was."""
        with self._lock:
            under_way = self._jobs.get(job)
        if under_way is None:
            return False
        with contextlib.suppress(Exception):  # its own request hears how it failed; this one will try itself
            await asyncio.shield(asyncio.wrap_future(under_way))
        return True

    async def run(self, client: str, job: Hashable | None, make: Callable[[], T],
                  discard: Callable[[T], None] | None = None) -> T:
        """`make()` in an export process, or 429 if the server or this client already makes as many as they may.
        The slot is held until `make` returns, even if this request is cancelled first (then `discard` gets
        its result)."""
        with self._lock:
            self._admit(client)
            done = self.pool.submit(make)
            self._clients[client] += 1
            if job is not None:
                self._jobs[job] = done
            done.add_done_callback(lambda f: self._release(client, job, f))
        try:
            return await asyncio.shield(asyncio.wrap_future(done))
        except asyncio.CancelledError:
            if discard is not None:
                done.add_done_callback(lambda f: None if f.cancelled() or f.exception() else discard(f.result()))
            raise

    def _admit(self, client: str) -> None:
        if self._clients[client] >= self.per_client:
            raise busy(f"An export you asked for is still being made, and this server makes {self.per_client} at "
                       "a time for each client; ask again once it has arrived.")
        running = sum(self._clients.values())
        if running >= self.total:
            raise busy(f"{running} exports are being made for others, the most this server makes at once (so "
                       f"that training keeps its CPU); ask again in {RETRY_SECONDS} s.")

    def _release(self, client: str, job: Hashable | None, done: Future[Any]) -> None:
        with self._lock:
            self._clients[client] -= 1
            if self._clients[client] <= 0:
                del self._clients[client]
            if job is not None and self._jobs.get(job) is done:
                del self._jobs[job]


def busy(sentence: str) -> HTTPException:
    """429 with `sentence` and a Retry-After."""
    return HTTPException(429, sentence, headers={"Retry-After": str(RETRY_SECONDS)})


class Pace:
    """At most `rate` bytes a second over every answer that draws on it, in the order they ask (one event loop)."""

    def __init__(self, rate: float = SEND_RATE) -> None:
        self.rate = rate
        self._free_at = 0.0  # loop time from which the next bytes may go

    async def take(self, size: int) -> None:
        """Wait until `size` more bytes may be sent."""
        now = asyncio.get_running_loop().time()
        start = max(now, self._free_at)
        self._free_at = start + size / self.rate
        if start > now:
            await asyncio.sleep(start - now)
