"""Per-thread resources: torch's intra-op threads go to the training thread alone, and the memory a
finished training thread freed goes back to the system.

torch on CPU parallelises ops with OpenMP, and every thread that runs a large enough op gets an OpenMP
thread pool of its own. Once two pools live in one process, libgomp stops letting idle workers spin and
every small op of a small CNN pays a futex wake-up: training runs about half as fast (measured on this
2-core machine, `tiny`/`mnist`: 7,500 samples/s alone, 3,500-4,000 with a second pool alive, whether
the other pool is busy or not). So only the training thread runs its ops on several cores (as many as its
run's count says), and every other thread that touches torch (the event loop building a run's model,
inference of uploads, the warm-up) runs its ops serially: those are single images and freshly initialised
weights, for which one core is plenty (describing the presets builds them on the meta device and computes
nothing).

How many threads the training thread uses is a run's own fact, like its seed: the thread count decides the
order of floating-point sums, so a run resumed or replayed on another count ends elsewhere (a resumed run
was 9.0e-2 away, relative, from the same run never interrupted when the count changed during it). So a run
trains on one count from its first step to its last (`run_threads`), records it (`Threads`: in its
checkpoints and its meta), and resume and replay use what it recorded. Re-tuning as the load changes
(`ThreadTuner`) is for a person who asks for speed over reproducibility (FILTERSCOPE_TRAINING_THREADS=adaptive).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import time
from collections.abc import Callable
from typing import Literal

import torch

TRAINING_THREADS = torch.get_num_threads()  # torch's default for this machine, read before anyone changes it

# The setting `adaptive` as the settings carry it (an int, like every other thread setting; app/config.py).
ADAPTIVE = -1

# What a run records of its threads: the count it trains on from its first step to its last, or "adaptive"
# (the tuner changed it as the load did: such a run cannot be repeated bit for bit).
Threads = int | Literal["adaptive"]


def default_threads(cores: int = TRAINING_THREADS) -> int:
    """The count a run trains on by default: every core but one, chosen once, before its first step.

    One core is left to the rest of the machine because a team of OpenMP threads waits at every barrier for
    the one that lost its core: on 2 cores, with one core busy elsewhere, two threads fall to 1,100-2,900
    samples/s while one keeps 5,600 (see ThreadTuner), and a person's machine has a browser and other work
    beside the run. Alone, all cores would be faster (1.5x on 2 cores); `adaptive` or a fixed count buys that.
    On this machine shared with others (bench_threads, 2026-12-02) one thread trained at 1.5-2.5x the speed of
    `adaptive`, and 1.3-2.4x beside a busy core: the tuner's trials at two threads stall on a busy machine.
    """
    return max(1, cores - 1)


def run_threads(setting: int | str | None) -> Threads:
    """A run's threads from a setting or a record: 0 (or None) the default count, N that many, `adaptive`."""
    if setting == "adaptive" or setting == ADAPTIVE:
        return "adaptive"
    if not setting:
        return default_threads()
    if isinstance(setting, str) or setting < 1:
        raise ValueError(f"A thread count is a positive number, 0 (the default) or 'adaptive', not {setting!r}.")
    return setting


def serial_torch() -> None:
    """Run this thread's torch ops on this thread alone, so that it never starts an OpenMP pool."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def training_torch() -> None:
    """Give this (training) thread every core torch would use by default."""
    if torch.get_num_threads() != TRAINING_THREADS:
        torch.set_num_threads(TRAINING_THREADS)


class ThreadTuner:
    """Chooses, by timing batches, how many threads the training thread's torch ops use: all cores, or one.

    Neither is right all the time (measured on this 2-core machine, `tiny`/`mnist`): alone, two threads train
    1.5x faster than one (8,500 against 5,400 samples/s); with one core busy elsewhere (a browser drawing the
    page, another program), a team of two OpenMP threads waits at every barrier for the one that lost its
    core and falls to 1,100-2,900 samples/s whatever the spin policy, while one thread keeps 5,600. So the
    tuner times a window of batches at each choice, keeps the faster (the one with more threads unless the
    other is clearly faster), and checks again after a hold that doubles while the choice stands (1 s up to
    4 s), or at once when batches slow down by half. The trials cost a window of the slower choice every few
    seconds: about 1-2 % of training time.

    Changing the thread count changes the order of floating-point sums: with the tuner, two runs of one seed
    agree to about 1e-7 at first and drift apart over a run (a run killed and resumed ended 9.0e-2 away,
    relative, from the same run never interrupted; another try 3.1e-5). So it is used only where a person
    asks for it (`adaptive`); by default a run keeps one count (`default_threads`).
    """

    WINDOW = 8  # batches timed per trial, after one batch to settle
    FIRST_HOLD = 1.0  # seconds before checking again after the choice changed
    MAX_HOLD = 4.0  # the longest a standing choice goes unchecked: how long a freed core may go unused
    SLOWDOWN = 1.5  # batches this much slower than when the choice was made: the machine changed, check now
    # A choice earlier in the list (more threads) is kept unless a later one is this much faster: a browser
    # drawing the page now and then slows a window of two threads without making one thread the better
    # choice (bench_sharing: two threads kept 0.73-1.06 of their speed with a page watching).
    MARGIN = 0.15

    def __init__(self, choices: list[int], clock: Callable[[], float] = time.perf_counter) -> None:
        self.choices = list(dict.fromkeys(choices))  # in order of preference: the first is tried first
        self.current = self.choices[0]
        self._clock = clock
        self._window: list[float] = []
        self._settle = False  # the next batch follows a change of thread count: not timed
        self._plan: list[int] = self._round() if len(self.choices) > 1 else []  # trials still to time
        self._times: dict[int, list[float]] = {}  # median batch time of each trial window, per choice
        self._reference = 0.0  # median batch time of the current choice when it was chosen
        self._hold = self.FIRST_HOLD
        self._hold_until = 0.0
        self._chosen: int | None = None  # the choice the last round of trials made
        self.trials = 0  # rounds of trials so far, for tests and the curious

    def _round(self) -> list[int]:
        """A round of trials: the current choice, each other one, the current one again (so drift cancels)."""
        return [self.current, *[c for c in self.choices if c != self.current], self.current]

    def record(self, seconds: float) -> int:
        """Record one batch's training time; return the thread count for the next batch."""
        if len(self.choices) == 1:
            return self.current
        if self._settle:
            self._settle = False
            return self.current
        self._window.append(seconds)
        if len(self._window) < self.WINDOW:
            return self.current
        median = statistics.median(self._window)
        self._window = []
        if not self._plan:  # holding a choice
            if median <= self.SLOWDOWN * self._reference and self._clock() < self._hold_until:
                return self.current
            self._plan = self._round()
        self._times.setdefault(self._plan.pop(0), []).append(median)
        if self._plan:
            self._switch(self._plan[0])
        else:
            self._decide()
        return self.current

    def _decide(self) -> None:
        times = {c: statistics.mean(t) for c, t in self._times.items()}
        fastest = min(times.values())
        best = next(c for c in self.choices if times[c] <= fastest * (1 + self.MARGIN))
        self._hold = min(2 * self._hold, self.MAX_HOLD) if best == self._chosen else self.FIRST_HOLD
        self._chosen, self._reference, self._times = best, times[best], {}
        self.trials += 1
        self._hold_until = self._clock() + self._hold
        self._switch(best)

    def _switch(self, threads: int) -> None:
        if threads != self.current:
            self.current = threads
            self._settle = True


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
