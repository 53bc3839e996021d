"""Shared test helpers: a polling wait, and an event recorder for engines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from filterscope.training.engine import Event

FILTERSCOPE = [sys.executable, "-m", "filterscope"]  # the `filterscope` command, in this interpreter


def wait_healthy(base: str, timeout: float = 60.0, process: subprocess.Popen[Any] | None = None,
                 ready: bool = True) -> None:
    """Wait until the server at `base` is ready, its /healthz "ok" rather than "starting" (with `ready` False:
    until it answers at all); fail if it does not get there, or its process exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as res:
                if not ready or json.loads(res.read())["status"] == "ok":
                    return
            raise OSError("starting")
        except OSError:
            assert process is None or process.poll() is None, f"the server exited with {process.returncode}"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1 if ready else 0.02)


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, killed and not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


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


@pytest.fixture(scope="session", autouse=True)
def _session_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test ever writes to the person's own run store: a session-wide one for long-lived fixtures..."""
    previous = os.environ.get("FILTERSCOPE_DATA_DIR")
    os.environ["FILTERSCOPE_DATA_DIR"] = str(tmp_path_factory.mktemp("session-runs"))
    # Servers the tests start (in process or not) hold only the runs the tests make; the shipped pretrained run
    # is added where a test asks for it (tests/api/test_pretrained.py).
    os.environ["FILTERSCOPE_PRETRAINED"] = "0"
    yield
    if previous is None:
        os.environ.pop("FILTERSCOPE_DATA_DIR", None)
    else:
        os.environ["FILTERSCOPE_DATA_DIR"] = previous


@pytest.fixture(autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """...and a fresh, empty one for each test (apps created inside the test read it from the environment)."""
    path = tmp_path_factory.mktemp("runs")
    monkeypatch.setenv("FILTERSCOPE_DATA_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    """Torch work a test does itself (loops, recorders, analyses, replays driven directly) on one thread.

    Two would be the default on a 2-core machine, and there under load every op waits for a descheduled partner
    thread: test_recorder.py took 140 s instead of 9. Engines set their own count when they start; this is set
    again before each test, since an engine's setting may outlive its run."""
    torch.set_num_threads(1)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: the fast tests answer first, and Playwright's session-long event loop (it stays
    running in the main thread while the browser is open) cannot get in the way of tests that call asyncio.run.

    Every test under tests/e2e/ is one, marked or not (a module that forgets `pytestmark` would otherwise open the
    browser half way through the run, and every asyncio.run after it fails)."""
    for item in items:
        if E2E in item.path.parents and item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
