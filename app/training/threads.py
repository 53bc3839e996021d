"""Who gets torch's intra-op threads: the training thread, and nobody else.

torch on CPU parallelises ops with OpenMP, and every thread that runs a large enough op gets an OpenMP
thread pool of its own. Once two pools live in one process, libgomp stops letting idle workers spin and
every small op of a small CNN pays a futex wake-up: training runs about half as fast (measured on this
2-core machine, `tiny`/`mnist`: 7,500 samples/s alone, 3,500-4,000 with a second pool alive, whether
the other pool is busy or not). So the training thread takes all cores, and every other thread that
touches torch (the event loop building a run's model, inference of uploads, the warm-up) runs its ops
serially: those are single images and freshly initialised weights, for which one core is plenty.
"""

from __future__ import annotations

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
