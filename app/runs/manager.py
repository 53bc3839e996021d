"""The runs the server holds: every stored run's record, and for live ones the engine that trains it.

Runs come back from the store at start-up; one that was training when the server stopped (or died) is
`interrupted` and resumes from its last checkpoint. Runs are kept until someone deletes them or the disk
budget needs the room (then the oldest ended runs go, whole, never one being watched).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from app.record.record import Message, RunRecord, new_stored_run
from app.record.store import Store, token_hash
from app.streaming.hub import Hub
from app.streaming.protocol import StatusChange
from app.training.config import TrainConfig
from app.training.datasets import get_dataset
from app.training.engine import Engine, StateError, Status, check
from app.training.inference import Inspector
from app.training.replay import state_at
from app.training.threads import serial_torch

log = logging.getLogger(__name__)


class TooManyRuns(Exception):
    """The cap on runs training at once is reached (or the queue behind it is full)."""


@dataclass(frozen=True)
class Sweep:
    """Runs that differ in one config field: one per value, in order."""

    id: str
    created_at: float
    field: str
    values: list[Any]
    base: dict[str, Any]
    runs: list[str]


class Waiting(Exception):
    """The run waits in the queue: it has not trained yet, so only stop (cancel) applies."""


# Runs past the training cap wait, in order of creation; more than this many waiting is refused (429): a
# sweep is at most 8 runs, and a page that starts runs in a loop should hear no before the disk does.
MAX_QUEUED = 16


class NotResumable(Exception):
    """The run is in no state to resume."""


# Sent to the watchers of a run that is deleted (WebSocket close code and reason, docs/protocol.md).
CLOSE_RUN_REMOVED = 4410
DELETED_REASON = "This run was deleted."
EVICTED_REASON = "This run was removed to keep the server's disk budget."


@dataclass
class Run:
    """One run: its record, and its engine while a thread trains it (or may again: paused)."""

    record: RunRecord
    engine: Engine | None
    inspector: Inspector
    watchers: Callable[[], int] = field(default=lambda: 0)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.model_validate(self.record.meta["config"])

    @property
    def status(self) -> Status:
        engine = self.engine
        return engine.status if engine is not None else Status(self.record.status)

    @property
    def computing(self) -> bool:
        """True while the run holds a training slot: running, or about to (a paused run holds none)."""
        engine = self.engine
        return engine is not None and engine.started and self.status in (Status.RUNNING, Status.QUEUED)

    @property
    def waiting(self) -> bool:
        """True while the run waits in the queue for a training slot (it has not trained yet)."""
        engine = self.engine
        return self.status is Status.QUEUED and not (engine is not None and engine.started)

    queue_position: Callable[[], int | None] = field(default=lambda: None)

    def owned_by(self, token: str) -> bool:
        return secrets.compare_digest(token_hash(token), self.record.token_hash)

    def describe(self) -> dict[str, Any]:
        """The run as the API answers it (see schemas.RunOut): what the store holds, with a live engine's
        progress counters. Status and history are both as committed, so they always agree."""
        rec = self.record
        state = dict(rec.state)
        e = self.engine
        if e is not None:
            state.update(epoch=max(state["epoch"], e.epoch), step=e.step_count, samples_seen=e.samples_seen,
                         elapsed=round(e.elapsed, 3), instrument_seconds=round(e.instrument_seconds, 3), lr=e.lr)
        return {
            "id": rec.id, "created_at": rec.created_at, **rec.meta, **state, "watchers": self.watchers(),
            "queue_position": self.queue_position(),
            "history": list(rec.epochs), "snapshots": len(rec.snapshots), "bytes": rec.size,
            "warnings": rec.warnings(),
            "lr_changes": [{"step": step, "lr": lr} for step, lr in rec.lr_changes().items()],
            **rec.analysis_fields(),
        }


class RunManager:
    """Creates, finds, resumes, deletes and stops runs; live runs are interrupted when the app shuts down."""

    def __init__(self, hub: Hub, loop: asyncio.AbstractEventLoop, store: Store, max_active: int,
                 max_disk: int, training_threads: int = 0, checkpoint_seconds: float = 3.0) -> None:
        self.hub = hub
        self.store = store
        self._loop = loop
        self._max_active = max_active
        self._max_disk = max_disk
        self._threads = training_threads
        self._checkpoint_seconds = checkpoint_seconds
        self._runs: dict[str, Run] = {}
        self._lock = threading.RLock()
        self._closing = False
        self.sweeps = {sid: Sweep(sid, at, body["field"], body["values"], body["base"], body["runs"])
                       for sid, at, body in store.load_sweeps()}
        for stored in store.load_runs():
            # A run that waited in the queue still waits: it had not trained, so there is nothing to resume. One
            # that says queued but has trained was being resumed when the server stopped: it is interrupted.
            waited = stored.state["status"] == Status.QUEUED.value and not stored.snapshots and not stored.steps
            if stored.state["status"] not in {s.value for s in Status if s.ended} and not waited:
                stored.state.update(status=Status.INTERRUPTED.value,
                                    message="The server stopped while this run trained; resume it to go on "
                                            "from its last checkpoint.")
                store.set_state(stored.id, stored.state)
            record = RunRecord(stored, store)
            self._runs[stored.id] = self._wrap(record, None)
        self.enforce_budget()
        self._slot_freed()

    def _wrap(self, record: RunRecord, engine: Engine | None) -> Run:
        config = TrainConfig.model_validate(record.meta["config"])
        info = get_dataset(config.dataset).info
        record.publish = self._publisher(record.id)
        return Run(record, engine, Inspector(config, info), lambda: self.hub.count(record.id),
                   lambda: self.position(record.id))

    def _publisher(self, run_id: str) -> Callable[[Message, bool, int], None]:
        def publish(message: Message, droppable: bool, n: int) -> None:  # writer thread, after the commit
            try:
                self._loop.call_soon_threadsafe(self.hub.publish, run_id, message, droppable, n)
            except RuntimeError:  # the loop is closed: the server is shutting down
                log.debug("dropped a message of run %s: event loop closed", run_id)
            if isinstance(message, str) and message.startswith('{"type":"status"'):
                status = Status(json.loads(message)["status"])
                if status.ended or status is Status.PAUSED:  # a training slot may have freed
                    self._ended_maybe(status.ended)
        return publish

    def _engine(self, run_id: str, record: RunRecord, config: TrainConfig, **kwargs: Any) -> Engine:
        serial_torch()  # building the model here must not start a second OpenMP pool (see threads.py)
        return Engine(config, emit=record.on_event, threads=self._threads,
                      checkpoint_seconds=self._checkpoint_seconds, **kwargs)

    def create(self, config: TrainConfig) -> tuple[Run, str]:
        """Build a run and start it, or queue it behind the runs that hold every training slot; returns it and
        its control token (blocking: call it off the event loop)."""
        with self._lock:
            queued = len(self._queue())
            if queued >= MAX_QUEUED:
                raise TooManyRuns(f"{queued} runs are already waiting for a training slot, the most this server "
                                  "queues; stop one, or wait for runs to finish.")
            run_id = "r" + secrets.token_hex(4)
            token = secrets.token_urlsafe(24)
            serial_torch()  # building the model here must not start a second OpenMP pool (see threads.py)
            engine = Engine(config, threads=self._threads, checkpoint_seconds=self._checkpoint_seconds)
            meta = {"config": config.model_dump(), "steps_per_epoch": engine.steps_per_epoch,
                    "total_steps": engine.total_steps, "classes": list(engine.info.classes),
                    "layers": [{"name": x.name, "in_channels": x.in_channels, "out_channels": x.out_channels,
                                "kernel": list(x.kernel), "fmap": list(x.fmap), "pool": x.pool}
                               for x in engine.layers]}
            stored = new_stored_run(run_id, token_hash(token), meta, config.lr)
            self.store.add_run(stored)
            record = RunRecord(stored, self.store)
            engine.listen(record.on_event)
            run = self._wrap(record, engine)
            self._runs[run_id] = run
            start = self._free_slots() > 0 and self._queue() == [run]
            if start:
                engine.start()
        log.info("run %s %s: %s", run_id, "started" if start else f"queued ({self.position(run_id)})",
                 config.model_dump_json())
        return run, token

    def create_sweep(self, configs: list[TrainConfig], field: str, values: list[Any],
                     base: TrainConfig) -> tuple[Sweep, list[tuple[Run, str]]]:
        """One run per config (they queue behind the cap, in order), kept together as a sweep."""
        for config in configs:  # every run or none: a bad value is refused before the first run starts
            check(config)
        with self._lock:
            queued = len(self._queue())
            if queued + len(configs) > MAX_QUEUED + self._free_slots():
                raise TooManyRuns(f"{queued} runs already wait for a training slot; this sweep's {len(configs)} "
                                  f"would pass the {MAX_QUEUED} the server queues. Stop some, or wait.")
            created: list[tuple[Run, str]] = []
            try:
                for config in configs:
                    created.append(self.create(config))
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

    def _free_slots(self) -> int:
        return self._max_active - sum(1 for r in self._runs.values() if r.computing)

    def _queue(self) -> list[Run]:
        """The runs waiting for a training slot, oldest (next to start) first."""
        with self._lock:
            runs = list(self._runs.values())
        return sorted((r for r in runs if r.waiting), key=lambda r: r.record.created_at)

    def position(self, run_id: str) -> int | None:
        """Where a waiting run stands in the queue (1: next to start), or None if it does not wait."""
        return next((i for i, r in enumerate(self._queue(), start=1) if r.id == run_id), None)

    def schedule(self) -> None:
        """Start the oldest waiting runs while training slots are free (not once the server is shutting down)."""
        with self._lock:
            if self._closing:
                return
            free = self._free_slots()
            for run in self._queue():
                if free <= 0:
                    break
                try:
                    engine = self.engine_for(run)
                    engine.start()
                except Exception as exc:  # one run that cannot be built must not hold up the queue behind it
                    log.exception("queued run %s could not start", run.id)
                    self._fail_waiting(run, f"This run could not start: {type(exc).__name__}: {exc}")
                    continue
                free -= 1
                log.info("run %s started from the queue", run.id)

    def _fail_waiting(self, run: Run, message: str) -> None:
        """A waiting run that cannot be built ends as `failed`, with the reason, for its watchers too."""
        run.engine = None
        state = {**run.record.state, "status": Status.FAILED.value, "message": message}
        run.record.state = state
        self.store.set_state(run.id, state)
        status = StatusChange(Status.FAILED.value, message, 0, 0, state.get("lr", run.config.lr))
        self.store.add_event(run.id, status.text())

    def engine_for(self, run: Run) -> Engine:
        """The run's engine; a run that waited across a restart gets one now (built, not started)."""
        with self._lock:
            if run.engine is None:
                if not run.waiting:
                    raise ValueError(f"run {run.id} has no engine and does not wait")
                run.engine = self._engine(run.id, run.record, run.config)
            return run.engine

    def control(self, run: Run, action: Callable[[Engine], None], *, waiting_ok: bool = False) -> None:
        """Apply a control to the run's engine; a waiting run takes only stop (cancel)."""
        with self._lock:
            if run.waiting and not waiting_ok:
                raise Waiting(f"This run waits in the queue ({self._ordinal(run)} in line) and has not trained "
                              f"yet; it starts when a training slot frees. Stop it to cancel it.")
            engine = self.engine_for(run) if run.waiting else run.engine
        if engine is None:
            raise StateError("no engine")
        action(engine)

    def _ordinal(self, run: Run) -> str:
        n = self.position(run.id) or 0
        return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"

    def resume(self, run: Run) -> None:
        """Resume a paused run, or continue an interrupted one from its last checkpoint (blocking)."""
        with self._lock:
            status = run.status
            if status is Status.PAUSED:
                self._check_slot()
                assert run.engine is not None
                run.engine.resume()
                return
            if status is not Status.INTERRUPTED:
                raise NotResumable(f"Only a paused or interrupted run can be resumed; this one is {status.value}.")
            self._check_slot()
            point = self.store.checkpoint(run.id, resumable=True)
            record = run.record
            if point is None:  # interrupted before its first checkpoint: from the start (its step 0 stays)
                record.truncate(0, 0, 0)
                engine = self._engine(run.id, record, run.config, first_seq=record.next_seq())
            else:
                record.truncate(point.seq, point.step, point.epoch)
                engine = self._engine(run.id, record, run.config, checkpoint=point.state,
                                      first_seq=record.next_seq())
            run.engine = engine
            run.inspector.clear()
        engine.start()
        log.info("run %s resumed at step %d", run.id, engine.step_count)

    def wake(self, run: Run, action: Callable[[], None]) -> None:
        """Step `run` with `action`, if a paused run may take a training slot (TooManyRuns if not)."""
        with self._lock:
            if run.status is Status.PAUSED:
                self._check_slot()
            action()

    def _check_slot(self) -> None:
        computing = [r for r in self._runs.values() if r.computing]
        if len(computing) >= self._max_active:
            raise TooManyRuns(f"{len(computing)} runs are training, the most this server allows at once; pause "
                              f"or stop one, or wait for one to finish.")

    def delete(self, run: Run) -> None:
        """Stop the run if it trains, tell its watchers, and remove it with its whole history."""
        with self._lock:
            self._runs.pop(run.id, None)
        engine = run.engine
        if engine is not None and not engine.status.ended:
            try:
                engine.stop()
            except Exception:  # it ended between the check and the call
                log.debug("run %s ended before stop", run.id)
            engine.join(10)
        self._remove(run, DELETED_REASON)
        self._slot_freed()

    def _remove(self, run: Run, reason: str) -> None:
        run.record.publish = None
        self.store.delete_run(run.id)
        try:
            self._loop.call_soon_threadsafe(self.hub.close, run.id, CLOSE_RUN_REMOVED, reason)
        except RuntimeError:
            pass

    def _ended_maybe(self, ended: bool = True) -> None:
        def after() -> None:
            self._slot_freed()
            if ended:
                self.enforce_budget()
        threading.Thread(target=after, name="run-ended", daemon=True).start()

    def _slot_freed(self) -> None:
        """A run stopped computing: the next in the queue may start (once the engine's thread is done)."""
        try:
            self.schedule()
        except Exception:  # a queued run that cannot be built must not stop the others
            log.exception("starting a queued run failed")

    def enforce_budget(self) -> None:
        """Past the disk budget, remove the oldest ended runs, whole, that nobody watches."""
        with self._lock:
            total = sum(r.record.size for r in self._runs.values())
            if total <= self._max_disk:
                return
            for run in sorted(self._runs.values(), key=lambda r: r.record.created_at):
                if total <= self._max_disk:
                    break
                if not run.status.ended or run.watchers() > 0:
                    continue
                total -= run.record.size
                del self._runs[run.id]
                log.warning("disk budget %d MB: removed run %s (%.1f MB), the oldest ended one",
                            self._max_disk // 2**20, run.id, run.record.size / 2**20)
                self._remove(run, EVICTED_REASON)

    def get(self, run_id: str) -> Run | None:
        """The run `run_id`, or None."""
        return self._runs.get(run_id)

    def list(self) -> list[Run]:
        """Every run, newest first."""
        return sorted(self._runs.values(), key=lambda r: r.record.created_at, reverse=True)

    def model_state(self, run: Run, seq: int, step: int) -> dict[str, torch.Tensor]:
        """The whole model's state at snapshot `seq` (step `step`): kept in memory, a checkpoint, or replayed
        from the nearest checkpoint before it (blocking, up to a few seconds: call it off the event loop)."""
        state = run.record.recent_state(seq)
        if state is not None:
            return state
        exact = self.store.checkpoint(run.id, at_or_before_step=step)
        if exact is not None and exact.step == step:
            return dict(exact.state["loop"]["model"])
        start = self.store.checkpoint(run.id, at_or_before_step=step, resumable=True)
        config = run.config
        return state_at(config, get_dataset(config.dataset).info, step,
                        None if start is None else start.state["loop"], run.record.lr_changes())

    def stop_all(self) -> None:
        """Ask every live run to stop at its next batch as `interrupted` (resumable); returns at once."""
        with self._lock:
            self._closing = True  # a slot freed now must not start a queued run: it waits for the next start
        for run in list(self._runs.values()):
            engine = run.engine
            if engine is not None and not engine.status.ended and not run.waiting:  # the queue stays as it is
                try:
                    engine.interrupt()
                except Exception:  # it ended between the check and the call
                    log.debug("run %s ended before interrupt", run.id)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Interrupt every live run, wait (up to `timeout` seconds in all) for their threads, write everything."""
        self.stop_all()
        deadline = time.monotonic() + timeout
        for run in list(self._runs.values()):
            if run.engine is not None:
                run.engine.join(max(0.0, deadline - time.monotonic()))
        self.store.close()
