"""Per-thread resources: torch's intra-op threads go to the training thread alone, and the memory a
finished training thread freed goes back to the system.

torch on CPU parallelises ops with OpenMP, and every thread that runs a large enough op gets an OpenMP
thread pool of its own. Once two pools live in one process, libgomp stops letting idle workers spin and
every small op of a small CNN pays a futex wake-up: training runs about half as fast (measured on this
2-core machine, `tiny`/`mnist`: 7,500 samples/s alone, 3,500-4,000 with a second pool alive, whether
the other pool is busy or not). So the training thread takes all cores, and every other thread that
touches torch (the event loop building a run's model, inference of uploads, the warm-up) runs its ops
serially: those are single images and freshly initialised weights, for which one core is plenty
(describing the presets builds them on the meta device and computes nothing).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

import torch

TRAINING_THREADS = torch.get_num_threads()  # torch's default for this machine, read before anyone changes it


def serial_torch() -> None:
    """Run this thread's torch ops on this thread alone, so that it never starts an OpenMP pool."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def training_torch() -> None:
    """Give this (training) thread every core torch would use by default."""
    if torch.get_num_threads() != TRAINING_THREADS:
        torch.set_num_threads(TRAINING_THREADS)


def _malloc_trim() -> Callable[[int], int] | None:
    libc = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] | None = getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None
    except OSError:
        return None
    return trim


_TRIM = _malloc_trim()


def return_freed_memory() -> None:
    """Give the memory a finished training thread freed back to the system (glibc only; elsewhere a no-op).

    Each training thread allocates its data set copy (30 MB for mnist) in a malloc arena of its own;
    glibc keeps freed arena memory mapped, so without this a server's size grew by about 75 MB per
    finished run (measured: resident size after 6 finished `tiny`/`mnist` runs, 788 MB without, 382 MB with).
    """
    if _TRIM is not None:
        _TRIM(0)
