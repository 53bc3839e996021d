"""The runs the server holds: every stored run's record, and for the ones it trains a handle.

Runs come back from the store at start-up. One that was training when its producer stopped (or died) has a
free lease (record/lease.py) and comes back `interrupted`, resumable from its last checkpoint; one whose
lease another live process holds (`filterscope train`, a person's script) is followed instead (follow.py),
and so is any run such a process adds while the server runs. Runs past the training cap wait in a queue
(queue.py). Runs are kept until someone deletes them or the disk budget needs the room (then the oldest
ended runs go, whole, never one being watched).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from typing import Any

from ..memory import give_back
from ..record.follows import Message
from ..record.images import remove_images
from ..record.lease import FileLock, run_lease, server_lock
from ..record.record import RunRecord, new_stored_run
from ..record.store import Store, StoredRun, token_hash
from ..record.writer import StorageFailed
from ..streaming.hub import Hub
from ..training.config import TrainConfig
from ..training.datasets import get_info
from ..training.datasets.registry import names as dataset_names
from ..training.events import StateError, Status
from ..training.inference import Inspector
from ..training.plan import check
from .cluster import RayRun, training_cap
from .disk import Disk, wal_pages
from .follow import Following
from .handle import LOCAL, RunHandle
from .local import LocalRun
from .queue import MAX_QUEUED, Queue, Sweep, TooManyRuns, Waiting
from .run import NoModel, Run, config_of
from .starts import Start, Starts

log = logging.getLogger(__name__)

__all__ = ["MAX_QUEUED", "NotResumable", "Run", "RunManager", "Sweep", "TooManyRuns", "Waiting"]


class NotResumable(Exception):
    """The run is in no state to resume."""


# Sent to the watchers of a run that is deleted (WebSocket close code and reason, docs/protocol.md).
CLOSE_RUN_REMOVED = 4410
DELETED_REASON = "This run was deleted."
BUDGET_SECONDS = 5.0  # the budget is kept at least this often while runs train
INTERRUPTED = "The server stopped while this run trained; resume it to go on from its last checkpoint."


class RunManager(Starts, Queue, Disk):
    """Creates, finds, resumes, deletes and stops runs; live runs are interrupted when the app shuts down."""

    def __init__(self, hub: Hub, loop: asyncio.AbstractEventLoop, store: Store, max_active: int,
                 max_disk: int, training_threads: int = 0, checkpoint_seconds: float = 3.0,
                 follow_seconds: float = 0.1, lock: FileLock | None = None, ray: bool = False,
                 stored: list[StoredRun] | None = None) -> None:
        """`ray`: train every run in a Ray actor (cluster.py; the cluster connected already) instead of a thread.
        `stored`: the store's runs, read already (record/opening.py); else read here."""
        self.hub = hub
        self.store = store
        self.data_dir = store.path.parent
        # The data directory's lock (Busy if another server has it), taken here unless the app took it already.
        self._lock_file = lock or server_lock(self.data_dir, what="filterscope serve")
        self._loop = loop
        self._max_disk = max_disk
        self._ray = ray
        # On a cluster a run trains on one thread of its own CPU unless told otherwise: the actor asks for as
        # many CPUs as it uses, so that the cluster's scheduler places runs without crowding a node.
        self._threads = (training_threads or 1) if ray else training_threads
        if ray:  # the training cap is the cluster's (and follows it: _schedule_loop)
            max_active = training_cap(self._threads)
        self._checkpoint_seconds = checkpoint_seconds
        self._runs: dict[str, Run] = {}
        self._leases: dict[str, FileLock] = {}  # of the runs this server writes
        self._lock = threading.RLock()
        store.writer.on_failure = self._storage_failed
        store.bound_wal(wal_pages(max_disk))
        super().__init__(max_active)
        self.sweeps = {sid: Sweep(sid, at, body["field"], body["values"], body["base"], body["runs"])
                       for sid, at, body in store.load_sweeps()}
        # Ten looks a second: a followed run's moments reach pages ~50 ms after their producer wrote them (p95
        # ~110 ms, bench_follow), in bursts small enough that a page's 2-snapshot queue drops few of them.
        self.following = Following(self, follow_seconds)
        for run in store.load_runs() if stored is None else stored:
            self.adopt(run)
        self._wake = threading.Event()  # a slot may have freed, or a run ended: schedule, keep the budget
        self._scheduler = threading.Thread(target=self._schedule_loop, name="run-scheduler", daemon=True)
        self._scheduler.start()
        self._wake.set()
        self.following.start()

    # ---- runs coming in (start-up, and runs another process adds) ---------------------------------------------

    def adopt(self, stored: StoredRun) -> Run:
        """Hold a stored run: followed if another live process trains it, interrupted if its producer is gone."""
        lease = run_lease(self.data_dir, stored.id)
        ended = Status(stored.state["status"]).ended
        producer = lease.holder() if not ended and not lease.is_free() else None  # another process writes it
        # A run of this server that waited in the queue still waits: it had not trained, so there is nothing to
        # resume. One that says queued but has trained was being resumed when the server stopped: interrupted.
        waited = stored.state["status"] == Status.QUEUED.value and not stored.snapshots and not stored.steps \
            and stored.meta.get("kind", "local") in ("local", "ray")
        if not ended and producer is None and not waited:
            stored.state.update(status=Status.INTERRUPTED.value, message=INTERRUPTED)
            self.store.set_state(stored.id, stored.state)
        run = self._wrap(RunRecord(stored, self.store), None)
        run.producer = producer
        with self._lock:
            self._runs[stored.id] = run
        if producer is not None:
            self.following.add(run)
        return run

    def known(self) -> set[str]:
        with self._lock:
            return set(self._runs)

    def _wrap(self, record: RunRecord, handle: RunHandle | None) -> Run:
        config = config_of(record.meta)
        run_id = record.id
        record.publish = self._publisher(run_id)
        record.on_status = lambda status: self._status_changed(run_id, status)
        # NoModel also for a run whose data set (a person's own) was deleted since: its history stays viewable.
        inspector = Inspector(config, get_info(config.dataset)) \
            if isinstance(config, TrainConfig) and config.dataset in dataset_names() else NoModel()
        return Run(record, handle, inspector, lambda: self.hub.count(run_id), lambda: self.position(run_id))

    def _publisher(self, run_id: str) -> Any:
        def publish(message: Message, droppable: bool, n: int) -> None:  # writer or follower thread, committed
            try:
                self._loop.call_soon_threadsafe(self.hub.publish, run_id, message, droppable, n)
            except RuntimeError:  # the loop is closed: the server is shutting down
                log.debug("dropped a message of run %s: event loop closed", run_id)
        return publish

    def _status_changed(self, run_id: str, status: Status) -> None:
        """A committed status: an ended run gives its lease back and drops its handle (the engine, its model,
        optimizer and normalised data: ~48 MB a `tiny` run; a resume builds a new one); a slot may have freed
        (writer thread)."""
        if status.ended:
            with self._lock:
                lease = self._leases.pop(run_id, None)
                run = self._runs.get(run_id)
                if run is not None and run.handle is not None and run.handle.status.ended:
                    run.handle = None
            if lease is not None:
                lease.release()
            give_back()  # the engine's model, optimizer and data, freed, back to the system (memory.py): 60 ms a run
        if status.ended or status is Status.PAUSED:
            self._wake.set()

    def _schedule_loop(self) -> None:
        while True:
            self._wake.wait(BUDGET_SECONDS)  # also every few seconds: live runs grow the store between events
            self._wake.clear()
            if self._closing:
                return
            try:
                if self._ray:  # nodes join and leave a cluster: the cap follows its CPUs
                    self._max_active = training_cap(self._threads)
                self.schedule()
                self.enforce_budget()
            except Exception:  # a queued run that cannot be built must not stop the others
                log.exception("scheduling runs failed")

    # ---- building and starting ------------------------------------------------------------------------------

    def _local(self, run: Run, checkpoint: bytes | None = None) -> LocalRun | RayRun:
        """The one place a stored run of this server gets its training thread's handle (built, not started):
        from `checkpoint`, else from its start (its seed's weights, or those it is fine-tuned from)."""
        record = run.record
        handle = self._new_handle(run.preset, threads=record.meta.get("threads", self._threads),  # its own count
                                  checkpoint=checkpoint, first_seq=record.next_seq(),
                                  initial=None if checkpoint else self.initial(run))
        handle.listen(record.on_event)
        return handle

    def _new_handle(self, config: TrainConfig, *, threads: int | str, checkpoint: bytes | None = None,
                    first_seq: int = 0, initial: dict[str, Any] | None = None) -> LocalRun | RayRun:
        """A run's handle, built, not started: a thread of this server, or an actor on the Ray cluster."""
        if self._ray:
            return RayRun(config, threads=threads, checkpoint_seconds=self._checkpoint_seconds,
                          checkpoint=checkpoint, first_seq=first_seq, initial=initial)
        return LocalRun(config, threads=threads, checkpoint_seconds=self._checkpoint_seconds,
                        checkpoint=checkpoint, first_seq=first_seq, initial=initial)

    def go(self, run: Run, handle: RunHandle) -> None:
        """Start a built handle, and note where the run trains (an actor's node and process)."""
        handle.start()
        run.worker = getattr(handle, "where", None)

    def _lease(self, run: Run) -> None:
        """Take the run's lease before writing it (StateError naming the holder if another process has it)."""
        with self._lock:
            if run.id in self._leases:
                return
            lease = run_lease(self.data_dir, run.id)
            if not lease.acquire(what="filterscope serve"):
                who = lease.holder()
                raise StateError(f"This run is being trained by process {who.get('pid', '?')} "
                                 f"({who.get('what', 'another process')}); it can't be trained here at the same time.")
            self._leases[run.id] = lease

    def create(self, config: TrainConfig, start: Start | None = None) -> tuple[Run, str]:
        """Build a run and start it, or queue it behind the runs that hold every training slot; returns it and
        its control token (blocking: call it off the event loop). `start`: its `start_for`, if worked out."""
        check(config)  # a config that cannot run is refused (422) whatever the queue holds, before 429
        if start is None:
            start = self.start_for(config)  # outside the lock: it may replay the source for seconds
        with self._lock:
            self.check_room(1)
            run_id = "r" + secrets.token_hex(4)
            token = secrets.token_urlsafe(24)
            engine = LocalRun(config, threads=self._threads, checkpoint_seconds=self._checkpoint_seconds,
                              initial=None if start is None else start.model)
            meta = {**engine.meta(), "kind": "ray" if self._ray else engine.kind, "capabilities": LOCAL.as_dict()}
            # On a cluster this engine only says the run's geometry: the run waits its turn, and the scheduler
            # thread builds its actor outside this lock (placing it may take seconds).
            handle = None if self._ray else engine
            if start is not None:
                meta["transfer"] = start.meta(config.freeze)
            self.check_fits(meta)
            stored = new_stored_run(run_id, token_hash(token), meta, config.lr)
            self._add(stored)
            record = RunRecord(stored, self.store)
            if start is not None:  # the run owns its start before it is acknowledged (starts.py)
                record.on_event(start.blob())
                if not self.store.flush():
                    raise StorageFailed(self.store.writer.failure or "The run could not be saved in time; try again.")
            if handle is not None:
                handle.listen(record.on_event)
            run = self._wrap(record, handle)
            self._runs[run_id] = run
            self._lease(run)
            now = handle is not None and self.free_slots() > 0 and self.queued() == [run]
            if handle is None:
                self._wake.set()  # the scheduler builds its actor and starts it as soon as a slot is free
            elif now:
                self.go(run, handle)
        log.info("run %s %s: %s", run_id, "started" if now else f"queued ({self.position(run_id)})",
                 config.model_dump_json())
        return run, token

    def _add(self, stored: StoredRun) -> None:
        """Store a new run and wait for the commit: what the API acknowledges (201) is on disk."""
        if self.store.writer.failure is not None:
            raise StorageFailed(self.store.writer.failure)
        committed = threading.Event()
        self.store.add_run(stored, committed.set)
        if not (self.store.flush() and committed.is_set()):
            raise StorageFailed(self.store.writer.failure or "The run could not be saved in time; try again.")

    def handle_for(self, run: Run) -> RunHandle:
        """The run's handle; a run that waited across a restart gets one now (built, not started)."""
        with self._lock:
            if run.handle is None:
                if not run.waiting:
                    raise StateError(run.refuse_controls() or f"run {run.id} has no handle")
                self._lease(run)
                run.handle = self._local(run)
            return run.handle

    def build(self, run: Run) -> RunHandle:
        """Give a waiting run its handle, built outside the manager's lock (loading a data set and building a
        model take a while; requests meanwhile are answered), unless it has one by then."""
        self._lease(run)
        handle = self._local(run)
        with self._lock:
            if run.handle is None:
                run.handle = handle
            return run.handle

    def fail_waiting(self, run: Run, message: str) -> None:
        """A waiting run that cannot be built ends as `failed`, with the reason, on every page watching it."""
        run.handle = None
        run.record.set_status(Status.FAILED, message)

    def control(self, run: Run, action: Any, *, waiting_ok: bool = False) -> None:
        """Apply `action(handle)`; a waiting run takes only stop (cancel); a followed run none (StateError)."""
        with self._lock:
            if run.waiting and not waiting_ok:
                raise Waiting(f"This run waits in the queue ({self.ordinal(run)} in line) and has not trained "
                              f"yet; it starts when a training slot frees. Stop it to cancel it.")
            refusal = run.refuse_controls()
            if refusal is not None:
                raise StateError(refusal)
            handle = self.handle_for(run)
        action(handle)

    def resume(self, run: Run) -> None:
        """Resume a paused run, or continue an interrupted one from its last checkpoint (blocking)."""
        if self.store.writer.failure is not None:
            raise StorageFailed(self.store.writer.failure)
        with self._lock:
            status = run.status
            if status is Status.PAUSED and run.handle is not None:
                self.check_slot()
                run.handle.resume()
                return
            if status is not Status.INTERRUPTED:
                raise NotResumable(f"Only a paused or interrupted run can be resumed; this one is {status.value}.")
            if isinstance(run.config, TrainConfig) and run.config.dataset not in dataset_names():
                raise NotResumable(f"This run trained on {run.config.dataset!r}, a data set deleted since: it "
                                   "cannot go on training; its history stays as it is.")
            if not run.capabilities.resumable:
                raise NotResumable("This run was recorded by a script, not trained by a preset: filterscope "
                                   "cannot go on training it; its history stays as it is.")
            self.check_slot()
            self._lease(run)
            point = self.store.checkpoint(run.id, resumable=True)
            record = run.record
            if point is None:  # interrupted before its first checkpoint: from the start (its step 0 stays)
                record.truncate(0, 0, 0)
                handle = self._local(run)
            else:
                record.truncate(point.seq, point.step, point.epoch)
                handle = self._local(run, checkpoint=point.data)
            run.handle, run.producer = handle, None
            run.inspector.clear()
        self.go(run, handle)
        log.info("run %s resumed at step %d", run.id, handle.progress().step)

    def wake(self, run: Run, action: Any) -> None:
        """Step `run` with `action`, if a paused run may take a training slot (TooManyRuns if not)."""
        with self._lock:
            if run.status is Status.PAUSED:
                self.check_slot()
            action()

    # ---- removing ---------------------------------------------------------------------------------------------

    def delete(self, run: Run) -> None:
        """Stop the run if it trains, tell its watchers, and remove it with its whole history."""
        with self._lock:
            self._runs.pop(run.id, None)
            self.following.forget(run.id)
        handle = run.handle
        if handle is not None and not handle.status.ended:
            try:
                handle.stop()
            except StateError:  # it ended between the check and the call
                log.debug("run %s ended before stop", run.id)
            handle.join(10)
        self._remove(run, DELETED_REASON)
        self._wake.set()

    def _remove(self, run: Run, reason: str) -> None:
        run.record.publish = None
        run.record.on_status = None
        self.store.delete_run(run.id)
        remove_images(self.data_dir, run.id)  # a watched run's own test images go with it
        with self._lock:
            lease = self._leases.pop(run.id, None)
        if lease is not None:
            lease.release()
        try:
            self._loop.call_soon_threadsafe(self.hub.close, run.id, CLOSE_RUN_REMOVED, reason)
        except RuntimeError:
            pass

    # ---- reading ----------------------------------------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        """The run `run_id`, or None."""
        return self._runs.get(run_id)

    def runs(self) -> list[Run]:
        with self._lock:
            return list(self._runs.values())

    def list(self) -> list[Run]:
        """Every run, newest first."""
        return sorted(self.runs(), key=lambda r: r.record.created_at, reverse=True)

    # ---- shutting down ---------------------------------------------------------------------------------------

    def stop_all(self) -> None:
        """Ask every live run to stop at its next batch as `interrupted` (resumable); returns at once."""
        with self._lock:
            self._closing = True  # a slot freed now must not start a queued run: it waits for the next start
        self._wake.set()
        for run in self.runs():
            handle = run.handle
            if handle is not None and not handle.status.ended and not run.waiting:  # the queue stays as it is
                try:
                    handle.interrupt()
                except StateError:  # it ended between the check and the call
                    log.debug("run %s ended before interrupt", run.id)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Interrupt every live run, wait (up to `timeout` seconds in all) for their threads, write everything."""
        self.stop_all()
        self.following.stop()
        deadline = time.monotonic() + timeout
        for run in self.runs():
            if run.handle is not None:
                run.handle.join(max(0.0, deadline - time.monotonic()))
        self.store.close()
        with self._lock:
            leases, self._leases = list(self._leases.values()), {}
        for lease in leases:
            lease.release()
        self._lock_file.release()

