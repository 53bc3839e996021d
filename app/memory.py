"""Giving freed memory back to the operating system.

glibc's malloc keeps what Python, NumPy and torch free in its arenas (one per thread that allocates, up to
8 x cores of them) and returns it to the system only from the top of each heap. A server that trains one run
after another, each in a new thread, so holds on to a few MB per finished run that nothing uses again.
`malloc_trim(0)` releases the free pages of every arena. Measured with bench/bench_memory.py (README,
Performance); MALLOC_ARENA_MAX=2 alone took +6.1 MB a run to +3.7, the trim to +0.7. Elsewhere than glibc
it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


LIBC = _libc()  # the C library (children.py asks it too), or None where there is none to load


def give_back() -> None:
    """Collect cycles (a finished engine is held by some: without this 20 runs kept +87 MB, with it +30 MB), then
    return every arena's free pages to the system. 50-70 ms, most of it the collection."""
    gc.collect()
    trim = getattr(LIBC, "malloc_trim", None)  # glibc's
    if trim is not None:
        trim(0)
