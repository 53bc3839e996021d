"""Low-priority workers for heavy work done on behalf of requests: one thread for decoding uploads and running
an image through a snapshot's model, two processes for making exports.

Starlette's default thread pool runs such work at the training thread's priority on as many threads as there
are requests: two 12-megapixel uploads in flight kept both cores busy and training fell to 0.31 of its speed
(bench/bench_sharing.py). Here they queue for one thread whose scheduling priority is lowered (nice +5, Linux:
per thread), so a core contended with the training thread goes mostly to training, and uploads wait their turn.
At nice +10 a 12 MP photo took 400-500 ms while a run trained (60 ms alone); at +5 it takes 60-200 ms.

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


_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="filterscope-background", initializer=_init_worker)


async def in_background(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` on the low-priority worker and await its result."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, functools.partial(fn, *args, **kwargs))


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
            # os.setpriority itself, not a function of this module: a worker that unpickled one would import
            # this module, and with it torch (~200 MB a worker).
            lower = functools.partial(os.setpriority, os.PRIO_PROCESS, 0, self.niceness) \
                if hasattr(os, "setpriority") else None
            self._pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"), initializer=lower)
            return self._pool.submit(fn, *args)


exports = LowPriorityProcesses(EXPORT_WORKERS, EXPORT_NICENESS)  # exports and trajectories
