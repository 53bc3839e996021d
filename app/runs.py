"""The runs the server holds: each an engine (training thread) wired to a relay (stream), with a cap."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.streaming.hub import Hub
from app.streaming.relay import RunRelay
from app.training.config import TrainConfig
from app.training.engine import Engine, Status
from app.training.inference import Inspector
from app.training.threads import serial_torch

log = logging.getLogger(__name__)


class TooManyRuns(Exception):
    """The cap on runs training at once is reached."""


# Sent to the watchers of a run the server let go of (WebSocket close code and reason, docs/protocol.md).
CLOSE_RUN_REMOVED = 4410
REMOVED_REASON = "This run was removed to make room for newer ones."


@dataclass
class Run:
    """One run: its engine, its relay, its inspector of uploads, when it was made."""

    id: str
    engine: Engine
    relay: RunRelay
    hub: Hub
    inspector: Inspector
    created_at: float = field(default_factory=time.time)
    # Whoever created the run holds this; pausing, stepping, stopping, changing it need it (viewers only watch).
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)

    @property
    def computing(self) -> bool:
        """True while the run holds a training slot: running, or about to (a paused run holds none)."""
        return self.engine.status in (Status.RUNNING, Status.QUEUED)

    def slim(self) -> None:
        """Keep the history, the step losses and the last snapshot; drop the other snapshots."""
        self.engine.snapshots.keep_latest()
        self.inspector.clear()

    def describe(self) -> dict[str, Any]:
        """The run as the API answers it (see schemas.RunOut)."""
        e = self.engine
        return {
            "id": self.id, "status": e.status.value, "message": e.message,
            "config": e.config.model_dump(), "created_at": self.created_at, "epoch": e.epoch,
            "step": e.step_count, "steps_per_epoch": e.steps_per_epoch, "total_steps": e.total_steps,
            "samples_seen": e.samples_seen, "elapsed": round(e.elapsed, 3),
            "instrument_seconds": round(e.instrument_seconds, 3), "lr": e.lr,
            "watchers": self.hub.count(self.id),
            "layers": [{"name": x.name, "in_channels": x.in_channels, "out_channels": x.out_channels,
                        "kernel": x.kernel, "fmap": x.fmap} for x in e.layers],
            "classes": list(e.info.classes),
            "history": [vars(h) for h in list(e.history)],
        }


class RunManager:
    """Creates, finds and stops runs; all runs stop when the app shuts down."""

    def __init__(self, hub: Hub, loop: asyncio.AbstractEventLoop, max_active: int, max_runs: int,
                 max_runs_with_snapshots: int, training_threads: int = 0) -> None:
        self.hub = hub
        self._loop = loop
        self._max_active = max_active
        self._max_runs = max_runs
        self._max_full = max_runs_with_snapshots
        self._threads = training_threads
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    def create(self, config: TrainConfig) -> Run:
        """Build and start a run (blocking: loads data and builds the model; call it off the event loop)."""
        with self._lock:
            self._check_slot()
            run_id = "r" + secrets.token_hex(4)
            run: Run | None = None

            def describe() -> dict[str, Any]:
                assert run is not None
                return run.describe()

            relay = RunRelay(run_id, self.hub, self._loop, describe)
            serial_torch()  # building the model here must not start a second OpenMP pool (see threads.py)
            engine = Engine(config, emit=relay.on_event, threads=self._threads)
            run = Run(run_id, engine, relay, self.hub, Inspector(config, engine.info))
            self._runs[run_id] = run
            self._evict()
        engine.start()
        log.info("run %s started: %s", run_id, config.model_dump_json())
        return run

    def wake(self, run: Run, action: Callable[[], None]) -> None:
        """Resume or step `run` with `action`, if a paused run may take a training slot (TooManyRuns if not)."""
        with self._lock:
            if run.engine.status is Status.PAUSED:
                self._check_slot()
            action()

    def _check_slot(self) -> None:
        computing = [r for r in self._runs.values() if r.computing]
        if len(computing) >= self._max_active:
            raise TooManyRuns(f"{len(computing)} runs are training, the most this server allows at once; pause "
                              f"or stop one, or wait for one to finish.")

    def _evict(self) -> None:
        """Bound memory: older ended runs keep their history and last snapshot; past max_runs they go."""
        for age, run in enumerate(self.list()):  # newest first
            if not run.engine.status.final:
                continue
            if age >= self._max_runs:
                del self._runs[run.id]
                self._loop.call_soon_threadsafe(self.hub.close, run.id, CLOSE_RUN_REMOVED, REMOVED_REASON)
            elif age >= self._max_full:
                run.slim()

    def get(self, run_id: str) -> Run | None:
        """The run `run_id`, or None."""
        return self._runs.get(run_id)

    def list(self) -> list[Run]:
        """Every run, newest first."""
        return sorted(self._runs.values(), key=lambda r: r.created_at, reverse=True)

    def stop_all(self) -> None:
        """Ask every live run to stop at its next batch; returns at once."""
        for run in list(self._runs.values()):
            if not run.engine.status.final:
                try:
                    run.engine.stop()
                except Exception:  # it ended between the check and the call
                    log.debug("run %s ended before stop", run.id)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop every live run and wait (up to `timeout` seconds in all) for their threads."""
        self.stop_all()
        deadline = time.monotonic() + timeout
        for run in list(self._runs.values()):
            run.engine.join(max(0.0, deadline - time.monotonic()))
