"""A run's training clock: seconds spent training, pauses excluded (read from any thread)."""

from __future__ import annotations

import threading
import time


class Clock:
    """Runs while the training thread trains; `elapsed` is the total so far, including the current stretch."""

    def __init__(self, elapsed: float = 0.0) -> None:
        self._elapsed = elapsed  # of the stretches that have ended
        self._since: float | None = None  # perf_counter at the start of the current stretch, if running
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._since is not None

    @property
    def elapsed(self) -> float:
        with self._lock:
            extra = time.perf_counter() - self._since if self._since is not None else 0.0
            return self._elapsed + extra

    def run(self, running: bool) -> None:
        """Start (or go on) or stop counting."""
        with self._lock:
            now = time.perf_counter()
            if running and self._since is None:
                self._since = now
            elif not running and self._since is not None:
                self._elapsed += now - self._since
                self._since = None
