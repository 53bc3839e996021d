"""Shared test helpers: a polling wait, and an event recorder for engines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from app.training.engine import Event


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.01) -> None:
    """Poll `predicate` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


class Recorder:
    """Collects an engine's events (called from the training thread)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type) -> list:
        """Every recorded event of type `kind`, in order."""
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: the fast tests answer first, and Playwright's session-long event loop (it stays
    running in the main thread while the browser is open) cannot get in the way of tests that call asyncio.run."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
