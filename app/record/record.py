"""The run record: one run's history, the one truth that the API, the socket's backlog and the store share.

A producer's torch-free events (training/events.py) arrive here on its thread: the server's own training
threads, or, in another process, `filterscope train` or a person's script writing through a record of its
own. Each is encoded once (the bytes that go on the socket), numbered, and queued to the store; once its
transaction commits, the record's view is updated and the message is published. A run another process
appends reaches this process's record through `follow` (the rows it committed, read back by follow.py).

So what a client is sent, live or as backlog, is always already on disk, and a
late joiner's backlog plus the live stream after its number have no gap and no repeat.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from typing import Any

import numpy as np

from ..streaming.codec import to_message
from ..streaming.protocol import Analysed, Epoch, Hello, StatusChange, Steps
from ..training.events import (
    AnalysisReady,
    CheckpointBlob,
    FrameEvent,
    RunEvent,
    Status,
    StatusEvent,
    StepsEvent,
    WarningEvent,
)
from .follows import Follows, Message, SnapshotRef
from .store import Store, StoredRun

log = logging.getLogger(__name__)

Publish = Callable[[Message, bool, int], None]  # (message, droppable, number)


class RunRecord(Follows):
    """One run's meta, state and history, appended to by its engine's events and persisted as they come."""

    RECENT_STATES = 8  # model states of the newest snapshots kept in memory: inspecting them needs no replay
    # Snapshots the store may have queued before the next intermediate one is skipped: ~1.3 s of the default
    # cadence (12 a second); each holds its arrays and a copy of the model (~0.1 MB for `tiny`, ~4 MB for
    # `classic`), so the queue stays under ~70 MB whatever a config asks.
    MAX_BEHIND = 16

    def __init__(self, stored: StoredRun, store: Store) -> None:
        self.id = stored.id
        self.created_at = stored.created_at
        self.token_hash = stored.token_hash
        self.meta = stored.meta  # config, layers, classes, steps_per_epoch, total_steps
        self.state = dict(stored.state)  # status, message, epoch, step, samples_seen, elapsed, instrument_s., lr
        self.epochs = list(stored.epochs)
        self.steps = list(stored.steps)
        self.losses = list(stored.losses)
        names = [layer["name"] for layer in self.meta.get("layers", [])]
        self.ratios = {name: list(stored.ratios.get(name, [None] * len(self.steps))) for name in names}
        self.snapshots = [SnapshotRef(*s) for s in stored.snapshots]
        self.events = list(stored.events)  # status, error and warning messages, as sent
        self._warned = {e["kind"] for e in self.events if e.get("type") == "warning"}
        self.size = stored.size
        self.skipped = int(stored.state.get("skipped_snapshots", 0))  # snapshots the store fell behind on
        self.analyses = {seq: (step, seconds) for seq, step, seconds in stored.analyses}  # committed, by seq
        self._store = store
        self._event_n = stored.event_n  # the store's number of the latest event seen (follow)
        self._checkpoint_bytes = 0  # of a followed run: its checkpoints' bytes as last read
        self._lock = threading.Lock()
        self._n = 0  # number of the latest message queued
        self._published = 0  # number of the latest message committed (and handed to `publish`)
        self._first: bytes | None = None  # frames for a late joiner's backlog, read from the store when needed
        self._latest: bytes | None = None
        self._states: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self.publish: Publish | None = None
        self.on_status: Callable[[Status], None] | None = None  # after a status change is committed
        self.halted = False  # the store failed: `state` is what halt said, not what commits report
        self._lr_log: dict[int, float] | None = None  # learning rates set by hand, as the producer has sent them
        # What the store will hold once the queued writes commit (the training thread's view, ahead of ours).
        self._pending_state = dict(self.state)
        self._pending_epochs = list(self.epochs)

    @property
    def status(self) -> str:
        return str(self.state["status"])

    # ---- appending (training thread) -----------------------------------------------------------------------

    def on_event(self, event: RunEvent) -> None:
        """Encode, persist and (once committed) publish one event of the run's producer."""
        if isinstance(event, FrameEvent) and self._skip(event):
            return
        if isinstance(event, CheckpointBlob):
            self._store.add_checkpoint(self.id, event, self._grow)
            return
        if isinstance(event, WarningEvent):
            with self._lock:  # once per kind, a resumed run included (it diagnoses afresh)
                if event.kind in self._warned:
                    return
                self._warned.add(event.kind)
        with self._lock:
            self._n += 1
            n = self._n
        if isinstance(event, AnalysisReady):
            self._analysed(n, event)
            return
        if isinstance(event, FrameEvent):
            ref = SnapshotRef(event.seq, event.step, event.epoch, event.epoch_end)
            if event.model is not None:
                with self._lock:
                    self._states[event.seq] = event.model
                    while len(self._states) > self.RECENT_STATES:
                        self._states.popitem(last=False)
            state = self._state_after(step=event.step, epoch=event.epoch, samples_seen=event.samples_seen,
                                      elapsed=round(event.elapsed, 3),
                                      instrument_seconds=round(event.instrument_seconds, 3))
            self._store.set_state(self.id, state)
            # A deferred frame is encoded on the writer thread, from copies the producer no longer uses.
            self._store.add_snapshot(self.id, (ref.seq, ref.step, ref.epoch, ref.epoch_end), event.frame,
                                     lambda frame: self._committed(n, frame, snapshot=ref, state=state), self._grow)
            return
        if isinstance(event, StepsEvent):  # its text and rows are made on the writer thread
            steps = cache(lambda: self._steps(event))
            self._store.add_steps(self.id, event.steps[0], lambda: steps()[1][1:],
                                  lambda: self._committed(n, steps()[0], steps=steps()[1]))
            return
        message = to_message(event)
        if isinstance(message, StatusChange):  # the learning rates set by hand, said once, by the server
            message = replace(message, lr_changes=self._lr_set(message.step, message.lr))
        text = message.text()
        if isinstance(message, Epoch):
            body = {k: v for k, v in message.body().items() if k != "type"}
            self._pending_epochs = epochs = [*self._pending_epochs, body]
            self._store.set_epochs(self.id, epochs, lambda: self._committed(n, text, epoch=body))
        else:  # a status change, an error or a warning
            status_state: dict[str, Any] | None = None
            if isinstance(message, StatusChange) and isinstance(event, StatusEvent):
                status_state = self._state_after(status=message.status, message=message.message,
                                                 epoch=message.epoch, step=message.step, lr=message.lr,
                                                 elapsed=round(event.elapsed, 3),
                                                 instrument_seconds=round(event.instrument_seconds, 3),
                                                 samples_seen=event.samples_seen)
                self._store.set_state(self.id, status_state)
            body = message.body()
            self._store.add_event(self.id, text, lambda: self._committed(n, text, event=body, state=status_state))

    def _steps(self, event: StepsEvent) -> tuple[str, tuple[list[int], list[float | None], list[list[float | None]]]]:
        """A steps event's text, and its steps, losses and per-layer ratios (in the run's order) as stored."""
        message = to_message(event)
        assert isinstance(message, Steps)
        rows = [message.ratios.get(name, [None] * len(message.steps)) for name in self.ratios]
        return message.text(), (message.steps, message.losses, rows)

    def _skip(self, event: FrameEvent) -> bool:
        """Whether to drop this snapshot because the store is MAX_BEHIND snapshots behind: memory stays bounded
        (each queued one holds its arrays and the model's state) and the run's step 0, epoch ends, steps and
        statuses are always kept. A skipped moment is counted (`skipped_snapshots`); the next one's ΔW spans it."""
        if event.epoch_end or event.step == 0 or self._store.behind() < self.MAX_BEHIND:
            return False
        with self._lock:
            self.skipped += 1
            skipped = self.skipped
        if skipped == 1 or skipped % 100 == 0:
            log.warning("run %s: the store is %d snapshots behind; %d skipped so far", self.id, self.MAX_BEHIND,
                        skipped)
        self._state_after(skipped_snapshots=skipped)
        return True

    def _analysed(self, n: int, event: AnalysisReady) -> None:
        """Store an analysis (its JSON made on the writer thread); once committed, say so to the clients."""
        def committed() -> None:
            with self._lock:
                self.analyses[event.seq] = (event.step, event.seconds)
                total = sum(seconds for _, seconds in self.analyses.values())
            text = Analysed(event.seq, event.step, event.epoch, round(total, 3)).text()
            self._committed(n, text)

        self._store.add_analysis(self.id, (event.seq, event.step, event.seconds), event.body, committed, self._grow)

    def _state_after(self, **changes: Any) -> dict[str, Any]:
        """The state as it will be once `changes` are written (kept in order with the writes)."""
        self._pending_state = {**self._pending_state, **changes}
        return self._pending_state

    def _grow(self, size: int) -> None:
        with self._lock:
            self.size += size

    # ---- the committed view (writer thread) ------------------------------------------------------------------

    def _committed(self, n: int, message: Message, *, snapshot: SnapshotRef | None = None,
                   steps: tuple[list[int], list[float | None], list[list[float | None]]] | None = None,
                   epoch: dict[str, Any] | None = None, event: dict[str, Any] | None = None,
                   state: dict[str, Any] | None = None) -> None:
        droppable = False
        with self._lock:
            if state is not None and not self.halted:
                self.state = dict(state)
            if snapshot is not None:
                assert isinstance(message, bytes)
                self.snapshots.append(snapshot)
                if self._first is None and len(self.snapshots) == 1:
                    self._first = message  # every client needs the first, to compare with: never dropped
                else:
                    droppable = True
                self._latest = message
            elif steps is not None:
                self.steps.extend(steps[0])
                self.losses.extend(steps[1])
                for name, row in zip(self.ratios, steps[2], strict=True):
                    self.ratios[name].extend(row)
            elif epoch is not None:
                self.epochs.append(epoch)
            elif event is not None:
                self.events.append(event)
                if event["type"] == "status" and Status(event["status"]).ended:
                    while len(self._states) > 1:  # an ended run keeps its last model in memory, no more
                        self._states.popitem(last=False)
                    if Status(event["status"]).final:  # it will never resume: only its anchors stay
                        self._store.drop_rolling(self.id, self._grow)
            self._published = n
        publish = self.publish
        if publish is not None:
            publish(message, droppable, n)
        on_status = self.on_status
        if on_status is not None and event is not None and event["type"] == "status":
            on_status(Status(event["status"]))

    def halt(self, status: Status, message: str) -> dict[str, Any]:
        """Say in memory what cannot be stored (the store has failed): this state stays, whatever commits that
        were already under way report after it. Returns it."""
        with self._lock:
            self.halted = True
            self.state = {**self.state, "status": status.value, "message": message}
            return dict(self.state)

    def set_status(self, status: Status, message: str) -> None:
        """Write a status that no producer reports (a queued run that cannot start, a producer gone): stored,
        then published like any other."""
        state = self._state_after(status=status.value, message=message)
        self._store.set_state(self.id, state)
        text = StatusChange(status.value, message, state["epoch"], state["step"], state["lr"],
                            state.get("samples_seen", 0)).text()
        with self._lock:
            self._n += 1
            n = self._n
        body = json.loads(text)
        self._store.add_event(self.id, text, lambda: self._committed(n, text, event=body, state=state))

    # ---- reading (any thread) ------------------------------------------------------------------------------

    def load_frames(self) -> None:
        """Read the first and latest frames from the store if they are not in memory (blocking: not on the loop)."""
        with self._lock:
            first = self.snapshots[0].seq if self.snapshots and self._first is None else None
            latest = self.snapshots[-1].seq if self.snapshots and self._latest is None else None
        for seq, attr in ((first, "_first"), (latest, "_latest")):
            if seq is not None:
                found = self._store.frame(self.id, seq)
                if found is not None:
                    with self._lock:
                        if getattr(self, attr) is None:
                            setattr(self, attr, found[0])

    def backlog(self, describe: dict[str, Any]) -> tuple[list[tuple[Message, bool]], int]:
        """What a client joining now is sent first, and the number of the latest message it covers.

        hello (the run as `describe` says, with the committed history), every step loss, the first snapshot
        and the latest. Call `load_frames` first for a run that is not live.
        """
        with self._lock:
            run = {**describe, "history": list(self.epochs)}
            run.update({k: self.state[k] for k in ("status", "message", "lr")})
            run.update(self._analysis_fields())
            hello = Hello(run).text()
            steps = Steps(self.steps, self.losses, self.ratios).text()
            items: list[tuple[Message, bool]] = [(hello, False), (steps, False)]
            # One committed snapshot is both the first and the latest, though two reads from disk (load_frames) or
            # a read and a live commit may hold it as two copies: it is sent once.
            if self._first is not None and self._first is not self._latest and len(self.snapshots) > 1:
                items.append((self._first, False))
            if self._latest is not None:
                items.append((self._latest, True))
            return items, self._published

    def step_history(self) -> tuple[list[int], list[float | None], dict[str, list[float | None]]]:
        """Copies of every committed step, its loss and each layer's update ratio."""
        with self._lock:
            return list(self.steps), list(self.losses), {k: list(v) for k, v in self.ratios.items()}

    def analysis_fields(self) -> dict[str, Any]:
        """`analyses` (the seqs of snapshots that have one) and `analysis_seconds`, for the run's answer."""
        with self._lock:
            return self._analysis_fields()

    def _analysis_fields(self) -> dict[str, Any]:
        return {"analyses": sorted(self.analyses),
                "analysis_seconds": round(sum(seconds for _, seconds in self.analyses.values()), 3)}

    def snapshot_list(self) -> list[SnapshotRef]:
        with self._lock:
            return list(self.snapshots)

    def find(self, seq: int | None) -> SnapshotRef | None:
        """Snapshot `seq` (the latest when None), or None."""
        with self._lock:
            if not self.snapshots:
                return None
            if seq is None:
                return self.snapshots[-1]
            for ref in reversed(self.snapshots):
                if ref.seq == seq:
                    return ref
            return None

    def recent_state(self, seq: int) -> dict[str, np.ndarray] | None:
        """The model's state at snapshot `seq` if it is still in memory."""
        with self._lock:
            return self._states.get(seq)

    def warnings(self) -> list[dict[str, Any]]:
        """Every warning raised, oldest first: {kind, step, message}."""
        with self._lock:
            return [{k: e[k] for k in ("kind", "step", "message")} for e in self.events if e.get("type") == "warning"]

    def lr_changes(self) -> dict[int, float]:
        """The learning rate a person set, by the step after which it applied (from the status log)."""
        with self._lock:
            return self._lr_changes()

    def _lr_changes(self) -> dict[int, float]:
        changes: dict[int, float] = {}
        lr = self.meta["config"]["lr"]
        for event in self.events:
            if event.get("type") == "status" and event["lr"] != lr:
                lr = changes[event["step"]] = event["lr"]
        return changes

    def _lr_set(self, step: int, lr: float) -> list[dict[str, Any]]:
        """Every learning rate set by hand, with `lr` at `step` if it is a change (producer thread)."""
        with self._lock:
            if self._lr_log is None:
                self._lr_log = self._lr_changes()
            last = list(self._lr_log.values())[-1] if self._lr_log else self.meta["config"]["lr"]
            if lr != last:
                self._lr_log[step] = lr
            return [{"step": k, "lr": v} for k, v in self._lr_log.items()]

    def truncate(self, seq: int, step: int, epoch: int) -> None:
        """Forget what came after a checkpoint (before resuming from it), in memory and on disk."""
        with self._lock:
            self.snapshots = [s for s in self.snapshots if s.seq <= seq]
            keep = sum(1 for s in self.steps if s <= step)
            self.steps, self.losses = self.steps[:keep], self.losses[:keep]
            self.ratios = {name: row[:keep] for name, row in self.ratios.items()}
            self.epochs = [e for e in self.epochs if e["epoch"] <= epoch]
            self._pending_epochs = list(self.epochs)
            self._states = OrderedDict((k, v) for k, v in self._states.items() if k <= seq)
            self.analyses = {k: v for k, v in self.analyses.items() if k <= seq}
            self._first = self._latest = None
            self._lr_log = None
            self.state.update(step=step, epoch=epoch)
            self._pending_state = dict(self.state)
        self._store.truncate(self.id, seq, step, epoch)
        self._store.set_epochs(self.id, list(self.epochs))
        self._store.set_state(self.id, dict(self.state))

    def next_seq(self) -> int:
        with self._lock:
            return self.snapshots[-1].seq + 1 if self.snapshots else 0


def new_stored_run(run_id: str, token_hash: str, meta: dict[str, Any], lr: float) -> StoredRun:
    """The store's row for a run that is about to start."""
    state = {"status": "queued", "message": None, "epoch": 0, "step": 0, "samples_seen": 0, "elapsed": 0.0,
             "instrument_seconds": 0.0, "lr": lr}
    return StoredRun(run_id, time.time(), token_hash, meta, state, [])
