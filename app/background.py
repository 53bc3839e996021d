"""Low-priority workers for heavy work done on behalf of requests: three lanes (one thread each) for decoding
uploads and running an image through a snapshot's model, two processes for making exports.

Starlette's default thread pool runs such work at the training thread's priority on as many threads as there
are requests: two 12-megapixel uploads in flight kept both cores busy and training fell to 0.31 of its speed
(bench/bench_sharing.py). Here each lane is one thread whose scheduling priority is lowered (nice +5, Linux:
per thread), so a core contended with the training thread goes mostly to training, and work waits its turn.
At nice +10 a 12 MP photo took 400-500 ms while a run trained (60 ms alone); at +5 it takes 60-200 ms.

The lanes are who waits behind whom (issue 21: seven queued old-moment inspects made a viewer's inspect of the
latest moment take 26.6 s, and the owner's probe uploads waited behind them on one shared thread):
- `owner`: whatever a run's owner (its control token) asks, so it never waits behind anyone else's;
- `viewers`: a viewer's image through a model that needs no replay (built, in memory, or a checkpoint): at
  most a few hundred milliseconds each;
- `rebuilds`: a viewer's image at an old moment whose model is rebuilt by replaying up to 625 steps of
  training (seconds), so the quick ones never wait behind it; and the worked arithmetic (in_background).
How many may wait on a viewer's lane is bounded in api/limits.py. Three threads at nice +5 take no more of
the training thread's core than one did while only one is busy, which is the common case; all three busy at
once take up to three quarters of a shared core.

Exports read every frame of a run, much of it in Python code that holds the GIL: on threads, even at nice +19,
eight clients exporting held a training run to 0.64 of its speed (bench/bench_exports.py), the training loop
waiting for a GIL that a descheduled export thread held. In processes of their own they take only the CPU
the scheduler gives them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, ParamSpec, TypeVar

from . import children
from .training.threads import serial_torch

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

NICENESS = 5  # CFS weight 335 against the training thread's 1024: about a quarter of a shared core
# CFS weight 15 against the training thread's 1024: an export gets what CPU nothing else wants, all of an idle
# core, and only that. At +10 eight clients exporting held training to 0.74-0.78 of its speed, at +19 to
# 0.80-0.87 (bench/bench_exports.py); nobody watches an export being made, and a kept one is sent at once.
EXPORT_NICENESS = 19
EXPORT_WORKERS = 2  # one per core here; a third export is told to ask again (429, api/limits.py)


def _init_worker() -> None:
    serial_torch()  # one image needs no OpenMP pool, and a second pool slows training (threads.py)
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)


class Lane:
    """One worker thread at NICENESS and the jobs waiting for it, taken in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"filterscope-{name}",
                                        initializer=_init_worker)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Queue `fn()`; its future (cancelling it before it starts takes it off the queue)."""
        return self._pool.submit(fn)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` on this lane and await its result (cancelled: taken off the queue if it
        has not started; if it has, it runs to its end)."""
        return await asyncio.wrap_future(self.submit(functools.partial(fn, *args, **kwargs)))


owner = Lane("owner")
viewers = Lane("viewers")
rebuilds = Lane("rebuilds")


async def in_background(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` on the rebuild lane (heavy work asked by anyone) and await its result."""
    return await rebuilds.run(fn, *args, **kwargs)


class LowPriorityProcesses:
    """A pool of `workers` processes at `niceness`, started on first use (spawned: they share no lock, thread or
    torch state with the server); `fn` and its arguments must pickle."""

    def __init__(self, workers: int, niceness: int) -> None:
        self.workers = workers
        self.niceness = niceness
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue `fn(*args)` in a worker process; its future, done once the work is (awaited or not). If a
        worker died (killed, out of memory), the work then under way fails with BrokenProcessPool and a new
        pool takes the next."""
        with self._lock:
            if self._pool is not None:
                try:
                    return self._pool.submit(fn, *args)
                except BrokenProcessPool:
                    log.warning("an export process stopped unexpectedly; starting new ones")
                    self._pool.shutdown(wait=False)
            # children.init, not a function of this module: a worker that unpickled one would import this
            # module, and with it torch (~200 MB a worker). The pool is made on the event loop's thread, which
            # lives as long as the server: the helpers end with it (PR_SET_PDEATHSIG is per thread).
            self._pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"),
                                             initializer=children.init, initargs=(self.niceness,))
            return self._pool.submit(fn, *args)


exports = LowPriorityProcesses(EXPORT_WORKERS, EXPORT_NICENESS)  # exports and trajectories
