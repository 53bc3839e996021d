"""The training slots and the queue behind them, and sweeps (one queued run per value of one field).

At most `max_active` runs train at once (two cores here: a third run would only slow all three); past
that, runs wait as `queued`, oldest first, and start when a slot frees. Mixed into RunManager, which holds
the runs; everything here reads them under its lock.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..training.config import TrainConfig
from ..training.plan import check

if TYPE_CHECKING:
    from ..record.store import Store
    from .handle import RunHandle
    from .run import Run
    from .starts import Start

log = logging.getLogger(__name__)

# Runs past the training cap wait, in order of creation; more than this many waiting is refused (429): a
# sweep is at most 8 runs, and a page that starts runs in a loop should hear no before the disk does.
MAX_QUEUED = 16


class TooManyRuns(Exception):
    """The cap on runs training at once is reached (or the queue behind it is full)."""


class Waiting(Exception):
    """The run waits in the queue: it has not trained yet, so only stop (cancel) applies."""


@dataclass(frozen=True)
class Sweep:
    """Runs that differ in one config field: one per value, in order."""

    id: str
    created_at: float
    field: str
    values: list[Any]
    base: dict[str, Any]
    runs: list[str]


class Queue:
    """Training slots, the queue and sweeps (see the module's docstring)."""

    store: Store
    sweeps: dict[str, Sweep]
    _lock: threading.RLock

    def __init__(self, max_active: int) -> None:
        self._max_active = max_active
        self._closing = False
        self._starting: set[str] = set()  # runs taken from the queue whose handles are being built

    # Provided by RunManager.
    def runs(self) -> list[Run]: raise NotImplementedError
    def create(self, config: TrainConfig, start: Start | None = None) -> tuple[Run, str]: raise NotImplementedError
    def start_for(self, config: TrainConfig) -> Start | None: raise NotImplementedError
    def delete(self, run: Run) -> None: raise NotImplementedError
    def handle_for(self, run: Run) -> RunHandle: raise NotImplementedError
    def build(self, run: Run) -> RunHandle: raise NotImplementedError
    def go(self, run: Run, handle: RunHandle) -> None: raise NotImplementedError
    def fail_waiting(self, run: Run, message: str) -> None: raise NotImplementedError

    def free_slots(self) -> int:
        return self._max_active - sum(1 for r in self.runs() if r.computing)

    def queued(self) -> list[Run]:
        """The runs waiting for a training slot, oldest (next to start) first."""
        return sorted((r for r in self.runs() if r.waiting), key=lambda r: r.record.created_at)

    def position(self, run_id: str) -> int | None:
        """Where a waiting run stands in the queue (1: next to start), or None if it does not wait."""
        return next((i for i, r in enumerate(self.queued(), start=1) if r.id == run_id), None)

    def ordinal(self, run: Run) -> str:
        n = self.position(run.id) or 0
        return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"

    def check_room(self, count: int) -> None:
        """TooManyRuns unless `count` more runs fit in the free slots and the queue."""
        queued = len(self.queued())
        if queued + count > MAX_QUEUED + (self.free_slots() if count > 1 else 0):
            raise TooManyRuns(f"{queued} runs are already waiting for a training slot, the most this server "
                              "queues; stop one, or wait for runs to finish.")

    def check_slot(self) -> None:
        computing = sum(1 for r in self.runs() if r.computing)
        if computing >= self._max_active:
            raise TooManyRuns(f"{computing} runs are training, the most this server allows at once; pause "
                              f"or stop one, or wait for one to finish.")

    def schedule(self) -> None:
        """Start the oldest waiting runs while training slots are free (not once the server is shutting down).

        The runs are picked under the lock (a slot each) and built outside it, so that requests are answered
        while a data set loads."""
        with self._lock:
            if self._closing:
                return
            free = self.free_slots() - len(self._starting)
            picked = [r for r in self.queued() if r.id not in self._starting][:max(0, free)]
            self._starting.update(r.id for r in picked)
        for run in picked:
            try:
                self.go(run, self.build(run))
                log.info("run %s started from the queue", run.id)
            except Exception as exc:  # one run that cannot be built must not hold up the queue behind it
                log.exception("queued run %s could not start", run.id)
                self.fail_waiting(run, f"This run could not start: {type(exc).__name__}: {exc}")
            finally:
                with self._lock:
                    self._starting.discard(run.id)

    def create_sweep(self, configs: list[TrainConfig], field: str, values: list[Any],
                     base: TrainConfig) -> tuple[Sweep, list[tuple[Run, str]]]:
        """One run per config (they queue behind the cap, in order), kept together as a sweep."""
        for config in configs:  # every run or none: a bad value is refused before the first run starts
            check(config)
        starts = [self.start_for(config) for config in configs]  # outside the lock: a start may replay its source
        with self._lock:
            if len(self.queued()) + len(configs) > MAX_QUEUED + self.free_slots():
                raise TooManyRuns(f"{len(self.queued())} runs already wait for a training slot; this sweep's "
                                  f"{len(configs)} would pass the {MAX_QUEUED} the server queues. Stop some, or wait.")
            created: list[tuple[Run, str]] = []
            try:
                for config, start in zip(configs, starts, strict=True):
                    created.append(self.create(config, start))
            except Exception:  # every run or none
                for run, _ in created:
                    self.delete(run)
                raise
            sweep = Sweep("s" + secrets.token_hex(4), time.time(), field, values, base.model_dump(),
                          [run.id for run, _ in created])
            self.sweeps[sweep.id] = sweep
            self.store.add_sweep(sweep.id, sweep.created_at, {"field": field, "values": values,
                                                               "base": sweep.base, "runs": sweep.runs})
        log.info("sweep %s: %s = %s", sweep.id, field, values)
        return sweep, created
