"""How much heavy work anyone may ask at once: exports (as many as there are export processes, one per client),
and images run through a snapshot's model (the owner's on a lane of their own, viewers' a few at a time); past a
bound the answer is a 429 with `Retry-After`.

An export (weights.npz, filters.gif, one filter's trajectory) reads every frame of a run, and anyone with the
link may ask for one: eight at once of a long run took a training run down to 0.08 of its speed (issue 21).
Builds run in the low-priority export processes (app/background.py); a request that would have to queue behind
them is answered at once instead, so neither waiting requests nor their memory pile up. A request for an
export of an ended run that is already being made waits for that one (taking no slot) and is sent the kept file.

Sending a kept export costs the server's own CPU (the event loop copies every byte): eight clients fetching
kept exports in a loop sent 95 MB/s and held training to 0.17-0.34 of its speed. All export answers together
are paced to SEND_RATE instead (Pace), which still sends the 68 MB npz of a long `classic` run in ~2 s.

An inspect (or a probe upload) decodes an image and runs it through the model at some snapshot; an old moment's
model is first rebuilt by replaying up to 625 steps of training, seconds of CPU. Seven queued anonymous inspects
of old moments made a viewer's inspect of the latest moment take 26.6 s, and the owner's probe uploads waited
behind them. So each kind of work has its own lane (app/background.py) and its own bound (Lanes):
- the owner's (the request carries the run's control token): OWNER_JOBS on their lane, never behind a viewer's;
- a viewer's quick one (the model needs no replay): VIEWER_JOBS in all, a few hundred milliseconds each;
- a viewer's old moment (a replay): REBUILD_JOBS in all, each up to a few seconds;
- and one at a time for each viewer's address, on either lane: eight tabs of one person share one slot.
A slot is held until its work ends, even if the request went away first (queued work that has not started is
dropped then), so refused requests cost the server next to nothing and waiting ones cannot pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any, TypeVar

from fastapi import HTTPException, Request

from ..background import Lane, LowPriorityProcesses
from ..background import owner as owner_lane
from ..background import rebuilds as rebuild_lane
from ..background import viewers as viewer_lane

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


def busy(sentence: str, retry: int = RETRY_SECONDS) -> HTTPException:
    """429 with `sentence` and a Retry-After of `retry` seconds."""
    return HTTPException(429, sentence, headers={"Retry-After": str(retry)})


# ---- images through a model: the owner's lane, and viewers' lanes of bounded length -------------------------

# The owner is one person with a secret token (their tabs, a script): their jobs wait only for each other. Each
# waiting job holds its upload (up to 10 MB by default), so even theirs are bounded: 8 is more than a person
# clicking moments asks at once, and at most ~80 MB of uploads.
OWNER_JOBS = 8
# A quick inspect (a 12 MP photo decoded and one forward pass) takes 60-200 ms beside a training run: one
# running and three waiting answer the last within about a second.
VIEWER_JOBS = 4
# A replay of up to 625 steps takes ~3 s of `tiny` beside a training run: one running and one waiting answer
# the second within ~6 s, about the longest a person waits for a click to show something (bench/bench_lanes.py:
# p95 5.7 s; 20 s on a day the machine was shared three ways, which more waiting would only lengthen).
REBUILD_JOBS = 2
VIEWER_PER_CLIENT = 1  # one image at a time for each viewer's address, whichever lane it is on
# The kernel inspector's worked numbers (api/worked.py) ask for a forward pass and a replayed step at once: two
# run for each viewer's address, counted apart from their images, on the same lanes and within the same bounds.
# Past those a request waits its turn rather than being refused (a page asks as a person clicks, and pages
# behind one address, a classroom's, share it), up to WORKED_WAIT seconds; more than WORKED_ASKED asked at once
# by one address are refused, so that waiting requests cannot pile up.
WORKED_PER_CLIENT = 2
WORKED_ASKED = 8
WORKED_WAIT = 20.0
WORKED_POLL = 0.05  # seconds between looks for a free place: any event loop may wait, no loop-bound primitive
REBUILD_RETRY_SECONDS = 3  # about one replay: when a place on the rebuild lane may be free again


class Lanes:
    """The jobs admitted to each lane and for each viewer's address (counts under a lock, any thread; given back
    when a job ends or is taken off its lane unstarted)."""

    def __init__(self, owner: Lane = owner_lane, viewers: Lane = viewer_lane, rebuilds: Lane = rebuild_lane,
                 per_client: int = VIEWER_PER_CLIENT) -> None:
        self.owner, self.viewers, self.rebuilds = owner, viewers, rebuilds
        self._most = {owner.name: OWNER_JOBS, viewers.name: VIEWER_JOBS, rebuilds.name: REBUILD_JOBS}
        self.per_client = per_client
        self._lock = threading.Lock()
        self._lanes: Counter[str] = Counter()
        # "image:<address>", "worked:<address>" (running), "asked:<address>" (worked numbers waiting or running)
        self._clients: Counter[str] = Counter()

    def jobs(self, lane: Lane) -> int:
        """How many jobs `lane` holds for this app, waiting or running."""
        with self._lock:
            return self._lanes[lane.name]

    def asked(self, client: str) -> int:
        """How many worked numbers the viewer's address `client` has asked for and not yet had, waiting or
        running."""
        with self._lock:
            return self._clients["asked:" + client]

    async def run(self, lane: Lane, client: str | None, fn: Callable[[], T], worked: bool = False) -> T:
        """`fn()` on `lane`, or 429 if the lane holds as many as it may, or `client` (a viewer's address; None
        for the owner) has as many jobs on the lanes as a viewer may. A viewer's `worked` numbers wait for a
        place instead (see WORKED_WAIT)."""
        if worked and client is not None:
            return await self._worked(lane, client, fn)
        who = None if client is None else "image:" + client
        with self._lock:
            self._admit(lane, who)
            self._lanes[lane.name] += 1
            if who is not None:
                self._clients[who] += 1
        return await self._submit(lane, who, fn)

    async def _worked(self, lane: Lane, client: str, fn: Callable[[], T]) -> T:
        """A viewer's worked numbers: counted as asked at once, then admitted when the lane and the address
        have a place (polled), or 429 after WORKED_WAIT."""
        asked, who = "asked:" + client, "worked:" + client
        with self._lock:
            if self._clients[asked] >= WORKED_ASKED:
                raise busy(f"{WORKED_ASKED} of the numbers you asked for are waiting already, the most this server "
                           "keeps for each viewer; ask again once they have arrived.")
            self._clients[asked] += 1
        try:
            deadline = asyncio.get_running_loop().time() + WORKED_WAIT
            while True:
                with self._lock:
                    if self._clients[who] < WORKED_PER_CLIENT and self._lanes[lane.name] < self._most[lane.name]:
                        self._lanes[lane.name] += 1
                        self._clients[who] += 1
                        break
                if asyncio.get_running_loop().time() > deadline:
                    raise busy(f"The server has been busy working out numbers for others for {WORKED_WAIT:g} s; "
                               f"ask again in {REBUILD_RETRY_SECONDS} s.", REBUILD_RETRY_SECONDS)
                await asyncio.sleep(WORKED_POLL)
            return await self._submit(lane, who, fn)
        finally:
            with self._lock:
                self._clients[asked] -= 1
                if self._clients[asked] <= 0:
                    del self._clients[asked]

    async def _submit(self, lane: Lane, who: str | None, fn: Callable[[], T]) -> T:
        """`fn()` on `lane`, its places (admitted already) given back when it ends or is dropped unstarted."""
        try:
            done = lane.submit(fn)
        except BaseException:
            self._release(lane, who)
            raise
        done.add_done_callback(lambda _: self._release(lane, who))
        return await asyncio.wrap_future(done)

    def _admit(self, lane: Lane, who: str | None) -> None:
        if who is not None and self._clients[who] >= self.per_client:
            raise busy(f"An image you sent is still being worked on, and this server works on {self.per_client} "
                       "at a time for each viewer; send the next once it has arrived.")
        if self._lanes[lane.name] < self._most[lane.name]:
            return
        if lane is self.owner:
            raise busy(f"{OWNER_JOBS} of your images are being worked on already, the most this server keeps "
                       "waiting for a run's owner; send the next once one has arrived.")
        if lane is self.rebuilds:
            raise busy(f"{REBUILD_JOBS} older moments are being rebuilt for others (each replays up to a few "
                       f"seconds of training); ask again in {REBUILD_RETRY_SECONDS} s, or pick a recent moment, "
                       "which needs no replay.", REBUILD_RETRY_SECONDS)
        raise busy(f"{VIEWER_JOBS} images are being worked on for other viewers, the most this server keeps "
                   f"waiting (so that training keeps its CPU); ask again in {RETRY_SECONDS} s.")

    def _release(self, lane: Lane, who: str | None) -> None:
        with self._lock:
            self._lanes[lane.name] -= 1
            if who is not None:
                self._clients[who] -= 1
                if self._clients[who] <= 0:
                    del self._clients[who]


async def lanes(request: Request) -> Lanes:
    """The app's lanes' counts, made on first use (on the event loop: one per app)."""
    found: Lanes | None = getattr(request.app.state, "lanes", None)
    if found is None:
        found = request.app.state.lanes = Lanes()
    return found


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
