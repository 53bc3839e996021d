"""One low-priority worker thread for heavy work done on behalf of requests: decoding uploads, running an image
through a snapshot's model.

Starlette's default thread pool runs such work at the training thread's priority on as many threads as there
are requests: two 12-megapixel uploads in flight kept both cores busy and training fell to 0.31 of its speed
(bench/bench_sharing.py). Here they queue for one thread whose scheduling priority is lowered (nice +5, Linux:
per thread), so a core contended with the training thread goes mostly to training, and uploads wait their turn.
At nice +10 a 12 MP photo took 400-500 ms while a run trained (60 ms alone); at +5 it takes 60-200 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from app.training.threads import serial_torch

P = ParamSpec("P")
T = TypeVar("T")

NICENESS = 5  # CFS weight 335 against the training thread's 1024: about a quarter of a shared core


def _init_worker() -> None:
    serial_torch()  # one image needs no OpenMP pool, and a second pool slows training (threads.py)
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)


_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="filterscope-background", initializer=_init_worker)


async def in_background(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` on the low-priority worker and await its result."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, functools.partial(fn, *args, **kwargs))
