"""A training run in its own thread, with pause/resume/step/stop/interrupt and an event for every moment.

The loop itself lives in `TrainLoop` (forward, loss, backward, step) and what it records in `Recorder`
(losses, snapshots, their cadence and cost); the engine owns the thread, the state machine and the command
mailbox, and reports everything through one callback, `emit(event)`, called from the training thread.
Checkpoints (`CheckpointEvent`) hold all a run needs to go on exactly where it was: an interrupted run
restarted from one (`Engine(..., checkpoint=...)`) ends with the same weights as a run that never stopped,
bit for bit: a run trains on one thread count, chosen before its first step and kept in its checkpoints, so
the resumed run sums in the same order (unless a person asked for `adaptive` threads; see threads.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .analysis import Analyst
from .checkpoints import Cadence, CheckpointEvent
from .clock import Clock
from .config import TrainConfig
from .diagnose import diverged
from .events import EpochSummary, ErrorEvent, StateError, Status, StatusEvent, StepsEvent, WarningEvent
from .loop import Diverged, TrainLoop
from .plan import LayerInfo, check, layer_infos
from .probes import make_probe, test_probe
from .recorder import Recorder
from .snapshots import Probe, Snapshot
from .threads import TRAINING_THREADS, Threads, ThreadTuner, return_freed_memory, run_threads

log = logging.getLogger(__name__)

# Re-exported: the events a caller of the engine handles (defined torch-free in events.py).
__all__ = ["CheckpointEvent", "Engine", "EpochSummary", "ErrorEvent", "Event", "LayerInfo", "StateError", "Status",
           "StatusEvent", "StepsEvent", "WarningEvent", "check"]


Event = StepsEvent | Snapshot | EpochSummary | StatusEvent | ErrorEvent | CheckpointEvent | WarningEvent


class _Stopped(Exception):
    """Raised inside the loop when a stop (or an interrupt) was requested."""


class Engine:
    """One training run: owns the loop, the thread and the controls."""

    def __init__(self, config: TrainConfig, emit: Callable[[Event], None] | None = None,
                 device: str | None = None, threads: int | str = 0, checkpoint: dict[str, Any] | None = None,
                 checkpoint_seconds: float = 3.0, first_seq: int = 0,
                 initial: dict[str, torch.Tensor] | None = None) -> None:
        """`threads`: torch threads for training, kept from the first step to the last: 0 the default count
        (threads.default_threads), N that many, `adaptive` (or threads.ADAPTIVE) re-tuned as the load changes.
        A checkpoint's own count wins: a run goes on with the count it was trained on.

        `checkpoint`: go on from this state (a CheckpointEvent's) instead of starting afresh; snapshots are
        then numbered from `first_seq` on, so no number is ever used twice. `checkpoint_seconds`: a checkpoint
        (replacing the previous one that is not an anchor) after the first snapshot past this much training.
        `initial`: the model at step 0 of a run that starts from another's weights (TrainLoop's `initial`).
        """
        self.config = config
        self._emit_cb = emit
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.info = check(config)
        if checkpoint is None:
            self.loop = TrainLoop(config, self.info, self.device, initial)
        else:
            self.loop = TrainLoop.restore(config, self.info, self.device, checkpoint["loop"])
        self.layers = layer_infos(self.loop.model, self.info)
        self.recorder = Recorder(self.loop, self._emit, self._test_probe(config.probe_index))
        self.analyst = Analyst(self.loop.model, self.info.size, self._emit)  # what each filter detects
        self._continued = checkpoint is not None or first_seq > 0  # an interrupted run going on
        self.clock = Clock(float(checkpoint["elapsed"]) if checkpoint is not None else 0.0)
        if checkpoint is not None:
            self.recorder.restore(checkpoint["recorder"], self._make_probe)
            self.recorder.seq = max(self.recorder.seq, first_seq)
        self.status = Status.QUEUED
        self.message: str | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._interrupt = False
        self._want_pause = False
        self._pause_after_snapshot = False
        self._pending_lr: float | None = None  # set by set_lr, applied by the training thread before a batch
        self._commands: list[Callable[[], bool | None]] = []  # run in the training thread; True = new probe
        self._thread: threading.Thread | None = None
        self._cadence = Cadence(self.loop.total_steps, checkpoint_seconds, self.loop.step_count, self.elapsed)
        recorded = checkpoint.get("threads") if checkpoint is not None else None  # older checkpoints: none
        self.threads: Threads = run_threads(recorded if recorded is not None else threads)
        self._tuner = ThreadTuner([TRAINING_THREADS, 1] if self.threads == "adaptive" else [self.threads])

    # ---- what the loop knows, for readers (the tests' and the handle's view of a live run) -------------------

    @property
    def step_count(self) -> int:
        return self.loop.step_count

    @property
    def epoch(self) -> int:
        return self.loop.epoch

    @property
    def samples_seen(self) -> int:
        return self.loop.samples_seen

    @property
    def lr(self) -> float:
        """The base learning rate a person set (the schedule scales it), from the next batch on."""
        pending = self._pending_lr
        return pending if pending is not None else self.loop.lr

    @property
    def instrument_seconds(self) -> float:
        """Training time spent on filterscope's own work, not on learning."""
        return self.recorder.instrument_seconds

    @property
    def elapsed(self) -> float:
        """Seconds spent training so far, pauses excluded."""
        return self.clock.elapsed

    @property
    def started(self) -> bool:
        """True once `start` has given the run its training thread."""
        return self._thread is not None

    def listen(self, emit: Callable[[Event], None]) -> None:
        """Send every event from now on to `emit` (before `start`)."""
        self._emit_cb = emit

    # ---- controls (any thread) -------------------------------------------------------------------------

    def start(self) -> None:
        """Start training in a background thread."""
        with self._cond:
            if self._thread is not None:
                raise StateError("This run has already been started.")
            self._thread = threading.Thread(target=self._run, name=f"train-{id(self):x}", daemon=True)
            if self.status is Status.QUEUED:  # it has its thread: running from now (listeners hear it at once)
                self._set_status(Status.RUNNING)
            elif self._continued:  # its record says `interrupted` until told otherwise
                self._emit_status()
        self._thread.start()

    def pause(self, wait: float = 10.0) -> None:
        """Pause after the current batch; wait up to `wait` seconds for the training thread to get there.

        The run says `paused` only once the thread has stopped, after whatever the batch in flight emits
        (its snapshot included): a paused run's step and latest snapshot no longer change. If the wait runs
        out (0: do not wait, as the server's handle does), the run still pauses, and says so when it does.
        """
        with self._cond:
            if self.status not in (Status.RUNNING, Status.QUEUED):
                raise StateError(f"Only a running run can be paused; this one is {self.status.value}.")
            self._want_pause = True
            if self._thread is None:  # never started: it pauses before its first batch
                self._set_status(Status.PAUSED)
                return
            self._cond.notify_all()
            self._cond.wait_for(lambda: self.status is Status.PAUSED or self.status.ended, wait)

    def resume(self) -> None:
        """Resume a paused run (or call off a pause the training thread has not reached yet)."""
        with self._cond:
            if self.status is not Status.PAUSED and not (self._want_pause and not self.status.ended):
                raise StateError(f"Only a paused run can be resumed; this one is {self.status.value}.")
            self._want_pause = False
            self._set_status(Status.RUNNING)
            self._cond.notify_all()

    def step(self) -> None:
        """Train up to the next snapshot, then pause."""
        with self._cond:
            self._refuse_if_ended("start a new run to train again")
            self._pause_after_snapshot = True
            if self.status is Status.PAUSED:
                self._want_pause = False
                self._set_status(Status.RUNNING)
                self._cond.notify_all()

    def stop(self) -> None:
        """Stop for good at the next batch boundary; history stays."""
        self._halt(interrupt=False)

    def interrupt(self) -> None:
        """Stop at the next batch boundary with a checkpoint, as `interrupted`: resumable later (shutdown)."""
        self._halt(interrupt=True)

    def _halt(self, interrupt: bool) -> None:
        with self._cond:
            if self.status.ended:
                raise StateError(f"This run has already ended ({self.status.value}).")
            self._stop, self._interrupt = True, interrupt
            self._cond.notify_all()
            if self._thread is None:  # never started: nothing to wait for
                self._set_status(Status.INTERRUPTED if interrupt else Status.STOPPED)

    def set_lr(self, lr: float) -> None:
        """Change the learning rate from the next batch on."""
        if not (lr > 0 and np.isfinite(lr)):
            raise ValueError("The learning rate must be a positive number.")
        def command() -> None:
            self.loop.lr, self._pending_lr = lr, None
            with self._cond:  # listeners learn the new rate, and the step it applies after
                self._emit_status()

        with self._cond:  # (reentrant) the command runs only once the training thread takes the lock
            self._later("its learning rate can't change", command)
            self._pending_lr = lr

    def set_probe_index(self, index: int) -> None:
        """Show test image `index` from the next snapshot on (a fresh snapshot is taken even when paused)."""
        count = self.info.test_count
        if not 0 <= index < count:
            raise ValueError(f"Probe index {index} is out of range: the test set has {count} images "
                             f"(0-{count - 1}).")
        self._later("inspect an image instead", lambda: self._new_probe(self._test_probe(index)))

    def set_probe_pixels(self, pixels: np.ndarray) -> None:
        """Show an uploaded image, (C, H, W) uint8 already prepared for this data set, as the probe."""
        c, h, w = pixels.shape
        if (c, h, w) != (self.info.channels, self.info.size, self.info.size):
            raise ValueError(f"Probe pixels must be {(self.info.channels, self.info.size, self.info.size)}.")
        self._later("inspect an image instead",
                    lambda: self._new_probe(self._make_probe(pixels, None, None, "upload")))

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the training thread to end; True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _refuse_if_ended(self, what: str) -> None:
        if self.status is Status.INTERRUPTED:
            raise StateError("This run was interrupted; resume it first (POST /api/runs/{id}/resume).")
        if self.status.final:
            raise StateError(f"This run has ended ({self.status.value}); {what}.")

    # ---- the loop (training thread) --------------------------------------------------------------------

    def _run(self) -> None:
        torch.set_num_threads(self._tuner.current)
        try:
            self._train()
        except _Stopped:
            self._halted()
        except Diverged as exc:
            self.recorder.flush_steps()  # the losses up to the blow-up, and the warnings they call for
            self._fail(Status.DIVERGED, diverged(exc.value, self.step_count + 1, self.epoch + 1, self.lr,
                                                 self.config.optimizer))
        except Exception as exc:
            log.exception("training run failed")
            try:
                self.recorder.flush_steps()  # the steps it got through, and their warnings
            except Exception:
                log.exception("the last steps of a failed run could not be sent")
            self._fail(Status.FAILED, f"Training failed: {type(exc).__name__}: {exc}")
        finally:
            self.clock.run(False)
            return_freed_memory()

    def _train(self) -> None:
        loop, recorder = self.loop, self.recorder
        _ = loop.data  # load the data set now, before the clock runs
        with self._cond:
            if self.status is Status.QUEUED:
                self._set_status(Status.RUNNING)
        if not self._continued:  # a run going on already has its step 0
            recorder.snapshot(self.elapsed, epoch_end=False, refresh=True, clocked=False)  # the untrained network
            with self.analyst.collecting(alone=True) as observe:  # step 0 has no test pass of its own
                loop.evaluate(observe)
            self.analyst.publish(recorder.last_seq, loop.step_count, loop.epoch)
        while not loop.done:
            self._between_batches()
            began = time.perf_counter()
            loss = loop.train_batch()
            threads = self._tuner.record(time.perf_counter() - began)
            if threads != torch.get_num_threads():
                torch.set_num_threads(threads)
            if recorder.batch(loss, self.elapsed):
                self._after_snapshot()
            if loop.epoch_complete:
                recorder.flush_steps()
                train_loss = loop.end_epoch()
                with self.analyst.collecting() as observe:  # the analysis watches the test pass
                    test_loss, test_acc = loop.evaluate(observe)
                train_acc = loop.train_accuracy()
                self._emit(EpochSummary(epoch=loop.epoch, step=loop.step_count, train_loss=train_loss,
                                        test_loss=test_loss, test_accuracy=test_acc, lr=loop.current_lr,
                                        wall_time=self.elapsed, train_accuracy=train_acc))
                recorder.snapshot(self.elapsed, epoch_end=True)
                self.analyst.publish(recorder.last_seq, loop.step_count, loop.epoch)
                if not loop.done:
                    self._after_snapshot()
        self._checkpoint(anchor=True, resumable=False)  # the finished model, for inspecting its last moment
        with self._cond:
            self._set_status(Status.FINISHED)

    def _after_snapshot(self) -> None:
        """A checkpoint when the cadence says one is due; `step` pauses here."""
        due = self._cadence.due(self.step_count, self.elapsed)
        if due is not None:
            self._checkpoint(anchor=due == "anchor")
        if self._pause_after_snapshot:  # `step` means: until the network has changed
            with self._cond:
                self._pause_after_snapshot = False
                if not self._stop:
                    self._want_pause = True
                    self._set_status(Status.PAUSED)

    def _checkpoint(self, anchor: bool, resumable: bool = True) -> None:
        """Emit a checkpoint of this moment; the copies it makes count as our own work."""
        started = time.perf_counter()
        loop = self.loop
        if resumable:
            state = {"loop": loop.state(), "recorder": self.recorder.state(), "elapsed": self.elapsed,
                     "threads": self.threads}  # a resume (and a replay) sums in the same order only on these
        else:  # to look at the model, not to go on from
            state = {"loop": {"model": loop.model_state()}}
        self._emit(CheckpointEvent(seq=self.recorder.last_seq, step=loop.step_count, epoch=loop.epoch,
                                   anchor=anchor, resumable=resumable, state=state))
        self._cadence.taken(loop.step_count, self.elapsed, anchor)
        if self.clock.running:
            self.recorder.instrument_seconds += time.perf_counter() - started

    def _between_batches(self) -> None:
        """Run queued commands, honour stop, and wait while paused (with a checkpoint on the way in)."""
        while True:
            with self._cond:
                commands, self._commands = self._commands, []
                if not commands:
                    if self._stop:
                        raise _Stopped
                    if not self._want_pause:
                        self.clock.run(True)
                        return
                    self.clock.run(False)
            if not commands:
                if self._cadence.step != self.step_count:
                    self._checkpoint(anchor=False)  # a paused run survives a restart where it stands
                with self._cond:
                    if self._stop or not self._want_pause or self._commands:
                        continue
                    self._set_status(Status.PAUSED)  # now that nothing changes any more (see pause)
                    self._cond.notify_all()  # pause() waits for this
                    self._cond.wait()
                continue
            refresh = False
            for command in commands:
                refresh = command() is True or refresh
            if refresh:  # a new probe: show it now, even while paused
                self.recorder.snapshot(self.elapsed, epoch_end=False, refresh=True,
                                       clocked=self.clock.running)

    def _halted(self) -> None:
        """The loop left on a stop request: `stopped`, or `interrupted` with a checkpoint to resume from."""
        self.recorder.flush_steps()
        if self._interrupt and self._cadence.step != self.step_count:  # at step 0 a resume starts afresh
            self._checkpoint(anchor=False)
        with self._cond:
            self._set_status(Status.INTERRUPTED if self._interrupt else Status.STOPPED)

    def _later(self, refusal: str, command: Callable[[], bool | None]) -> None:
        """Queue `command` for the training thread's next batch boundary (StateError `refusal` if ended)."""
        with self._cond:
            self._refuse_if_ended(refusal)
            self._commands.append(command)
            self._cond.notify_all()

    def _new_probe(self, probe: Probe) -> bool:
        self.recorder.probe = probe
        return True  # show it now: a fresh snapshot, even while paused

    def _test_probe(self, index: int) -> Probe:
        return test_probe(self.config.dataset, index, self.device)

    def _make_probe(self, pixels: np.ndarray, index: int | None, label: int | None, source: str) -> Probe:
        return make_probe(pixels, self.info, self.device, index, label, source)

    # ---- state and events ------------------------------------------------------------------------------

    def _set_status(self, status: Status, message: str | None = None) -> None:
        """Change state and tell listeners; the caller holds self._cond."""
        if status is self.status and message == self.message:
            return
        self.status, self.message = status, message
        if status is not Status.RUNNING:
            self.clock.run(False)
        self._emit_status()

    def _emit_status(self) -> None:
        """Tell listeners where the run stands (its state, step and learning rate); the caller holds _cond."""
        self._emit(StatusEvent(self.status, self.message, self.epoch, self.step_count, self.lr, self.elapsed,
                               self.instrument_seconds, self.samples_seen))

    def _fail(self, status: Status, message: str) -> None:
        self._emit(ErrorEvent(message))
        with self._cond:
            self._set_status(status, message)

    def _emit(self, event: Event | object) -> None:
        if self._emit_cb is None:
            return
        try:
            self._emit_cb(event)  # type: ignore[arg-type]
        except Exception:  # a broken listener must never kill training
            log.exception("event listener failed on %s", type(event).__name__)
