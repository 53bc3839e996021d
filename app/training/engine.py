"""The training loop, run in its own thread, with pause/resume/step/stop and events for every moment.

The loop is plain PyTorch: forward, loss, backward (dL/dW for every kernel entry), optimizer step. Around it,
the engine records each batch's loss, takes a snapshot every `snapshot_every` batches and at the end of each
epoch, evaluates on the test set, and reports all of it through one callback, `emit(event)`, called from the
training thread. Every random draw (initial weights, shuffling, augmentation, dropout) comes from the run's
own generator, so the same seed and config give the same numbers even with other runs training beside it
(bit for bit with a fixed thread count; see ThreadTuner for what `auto` threads change).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.training.config import TrainConfig
from app.training.data import Tensors, augment_shift, normalise, to_tensors
from app.training.datasets import get_dataset
from app.training.models import INIT_SCALES, ConvLayer, build_model, conv_layers, feature_shapes, init_weights
from app.training.snapshots import Probe, Reference, Snapshot, SnapshotStore, capture, conv_weights
from app.training.threads import TRAINING_THREADS, ThreadTuner, return_freed_memory

log = logging.getLogger(__name__)


class Status(StrEnum):
    """The states of a run; the last four are final."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FINISHED = "finished"
    DIVERGED = "diverged"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        """True when the run will never train again."""
        return self in (Status.STOPPED, Status.FINISHED, Status.DIVERGED, Status.FAILED)


@dataclass(frozen=True)
class EpochSummary:
    """What one epoch achieved."""

    epoch: int  # 1-based
    step: int
    train_loss: float
    test_loss: float
    test_accuracy: float
    lr: float
    wall_time: float  # seconds of training since the start (pauses excluded)


@dataclass(frozen=True)
class StepsEvent:
    """Training losses of consecutive batches."""

    steps: list[int]
    losses: list[float]


@dataclass(frozen=True)
class StatusEvent:
    """The run changed state (or learning rate)."""

    status: Status
    message: str | None
    epoch: int
    step: int
    lr: float


@dataclass(frozen=True)
class ErrorEvent:
    """Training diverged or failed; a StatusEvent follows."""

    message: str


Event = StepsEvent | Snapshot | EpochSummary | StatusEvent | ErrorEvent


class StateError(Exception):
    """A control that does not apply in the run's current state."""


@dataclass(frozen=True)
class LayerInfo:
    """A conv layer's geometry, known before training starts."""

    name: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    fmap: tuple[int, int, int]  # (C, H, W) for one input image


class _Stopped(Exception):
    """Raised inside the loop when a stop was requested."""


class Engine:
    """One training run: owns the model, the thread and the run's history."""

    # Flush batch losses to listeners at least this often, so the curve moves between snapshots.
    STEPS_FLUSH = 25

    def __init__(self, config: TrainConfig, emit: Callable[[Event], None] | None = None,
                 device: str | None = None, threads: int = 0) -> None:
        """`threads`: torch threads for training; 0 lets a ThreadTuner pick 1 or all cores as the load changes."""
        self.config = config
        self._emit_cb = emit
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dataset = get_dataset(config.dataset)
        self.info = dataset.info
        if config.probe_index >= dataset.info.test_count:
            raise ValueError(f"probe_index {config.probe_index} is out of range: the {config.dataset} test set "
                             f"has {dataset.info.test_count} images (0-{dataset.info.test_count - 1}).")
        self.generator = torch.Generator().manual_seed(config.seed)
        self.model = build_model(config.model, self.info.channels, self.info.size, len(self.info.classes),
                                 config.dropout)
        init_weights(self.model, self.generator, INIT_SCALES[config.init])
        shapes = feature_shapes(self.model, self.info.channels, self.info.size)
        self.layers = [LayerInfo(c.name, c.conv.in_channels, c.conv.out_channels,
                                 (int(c.conv.kernel_size[0]), int(c.conv.kernel_size[1])), shapes[c.name])
                       for c in conv_layers(self.model)]
        n_train = dataset.info.train_count
        self.steps_per_epoch = math.ceil(n_train / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.snapshots = SnapshotStore()
        self.history: list[EpochSummary] = []
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.status = Status.QUEUED
        self.message: str | None = None
        self.epoch = 0
        self.step_count = 0
        self.samples_seen = 0
        self.lr = config.lr  # the base rate a person set; the schedule scales it
        self.current_lr = config.lr  # the rate of the latest batch
        self._cond = threading.Condition()
        self._stop = False
        self._want_pause = False
        self._pause_after_snapshot = False
        self._commands: list[Callable[[], bool | None]] = []  # run in the training thread; True = new probe
        self._thread: threading.Thread | None = None
        self._elapsed = 0.0
        self._running_since: float | None = None
        self._probe: Probe | None = None
        self._reference = Reference()  # step 0's weights and the run's largest values, for every snapshot
        self._seq = 0
        self.instrument_seconds = 0.0  # training time spent on filterscope's own work, not on learning
        self._tuner = ThreadTuner([threads] if threads else [TRAINING_THREADS, 1])

    # ---- controls (any thread) -------------------------------------------------------------------------

    def start(self) -> None:
        """Start training in a background thread."""
        with self._cond:
            if self._thread is not None:
                raise StateError("This run has already been started.")
            self._thread = threading.Thread(target=self._run, name=f"train-{id(self):x}", daemon=True)
        self._thread.start()

    def pause(self, wait: float = 10.0) -> None:
        """Pause after the current batch; wait up to `wait` seconds for the training thread to get there.

        The run says `paused` only once the thread has stopped, after whatever the batch in flight emits
        (its snapshot included): a paused run's step and latest snapshot no longer change. A batch plus an
        epoch's test evaluation takes well under the wait for every preset; if the wait runs out, the run
        still pauses, and says so when it does.
        """
        with self._cond:
            if self.status not in (Status.RUNNING, Status.QUEUED):
                raise StateError(f"Only a running run can be paused; this one is {self.status.value}.")
            self._want_pause = True
            if self._thread is None:  # never started: it pauses before its first batch
                self._set_status(Status.PAUSED)
                return
            self._cond.notify_all()
            self._cond.wait_for(lambda: self.status is Status.PAUSED or self.status.final, wait)

    def resume(self) -> None:
        """Resume a paused run (or call off a pause the training thread has not reached yet)."""
        with self._cond:
            if self.status is not Status.PAUSED and not (self._want_pause and not self.status.final):
                raise StateError(f"Only a paused run can be resumed; this one is {self.status.value}.")
            self._want_pause = False
            self._set_status(Status.RUNNING)
            self._cond.notify_all()

    def step(self) -> None:
        """Train up to the next snapshot, then pause."""
        with self._cond:
            if self.status.final:
                raise StateError(f"This run is {self.status.value}; start a new run to train again.")
            self._pause_after_snapshot = True
            if self.status is Status.PAUSED:
                self._want_pause = False
                self._set_status(Status.RUNNING)
                self._cond.notify_all()

    def stop(self) -> None:
        """Stop for good at the next batch boundary; history stays."""
        with self._cond:
            if self.status.final:
                raise StateError(f"This run has already ended ({self.status.value}).")
            self._stop = True
            self._cond.notify_all()
        thread = self._thread
        if thread is None:  # never started: nothing to wait for
            with self._cond:
                self._set_status(Status.STOPPED)

    def set_lr(self, lr: float) -> None:
        """Change the learning rate from the next batch on."""
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError("The learning rate must be a positive number.")
        with self._cond:
            if self.status.final:
                raise StateError(f"This run has ended ({self.status.value}); its learning rate can't change.")
            self.lr = lr
            self._commands.append(self._apply_lr)
            self._cond.notify_all()

    def set_probe_index(self, index: int) -> None:
        """Show test image `index` from the next snapshot on (a fresh snapshot is taken even when paused)."""
        count = self.info.test_count
        if not 0 <= index < count:
            raise ValueError(f"Probe index {index} is out of range: the test set has {count} images "
                             f"(0-{count - 1}).")
        self._set_probe_later(lambda: self._test_probe(index))

    def set_probe_pixels(self, pixels: np.ndarray) -> None:
        """Show an uploaded image, (C, H, W) uint8 already prepared for this data set, as the probe."""
        c, h, w = pixels.shape
        if (c, h, w) != (self.info.channels, self.info.size, self.info.size):
            raise ValueError(f"Probe pixels must be {(self.info.channels, self.info.size, self.info.size)}.")
        self._set_probe_later(lambda: self._make_probe(pixels, None, None, "upload"))

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the training thread to end; True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def elapsed(self) -> float:
        """Seconds spent training so far, pauses excluded."""
        with self._cond:
            extra = time.perf_counter() - self._running_since if self._running_since is not None else 0.0
            return self._elapsed + extra

    # ---- the loop (training thread) --------------------------------------------------------------------

    def _run(self) -> None:
        torch.set_num_threads(self._tuner.current)
        try:
            self._train()
        except _Stopped:
            with self._cond:
                self._set_status(Status.STOPPED)
        except _Diverged as exc:
            self._fail(Status.DIVERGED, f"The loss became {exc.value} at step {self.step_count + 1} (epoch "
                       f"{self.epoch + 1}): the learning rate {self.lr:g} is too high for "
                       f"{self.config.optimizer}. Start again with a smaller one (try 0.001-0.01 for adam, "
                       f"0.01-0.1 for sgd).")
        except Exception as exc:
            log.exception("training run failed")
            self._fail(Status.FAILED, f"Training failed: {type(exc).__name__}: {exc}")
        finally:
            with self._cond:
                self._clock(False)
            return_freed_memory()

    def _train(self) -> None:
        cfg = self.config
        data = to_tensors(get_dataset(cfg.dataset), self.device)  # (N, C, H, W) float32, normalised
        model = self.model.to(self.device)
        layers = conv_layers(model)
        opt = self._optimizer(model)
        self._probe = self._test_probe(cfg.probe_index)
        with self._cond:
            if self.status is Status.QUEUED:
                self._set_status(Status.RUNNING)
        previous = conv_weights(layers)
        self._snapshot(model, layers, previous, [], epoch_end=False, refresh=True)  # the untrained network
        n = data.x_train.shape[0]
        pending: list[float] = []  # losses since the last snapshot
        flush_from = 0
        for epoch in range(cfg.epochs):
            order = torch.randperm(n, generator=self.generator).to(self.device)
            epoch_loss, epoch_count = 0.0, 0
            for b in range(self.steps_per_epoch):
                self._checkpoint(model, layers, previous)
                began = time.perf_counter()
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                x, y = data.x_train[idx], data.y_train[idx]  # (B, C, H, W), (B,)
                if cfg.augment:
                    x = augment_shift(x, self.generator)
                self._schedule(opt)
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y)
                loss.backward()  # type: ignore[no-untyped-call]  # dL/dW for every kernel entry
                opt.step()  # W <- W - lr * (optimizer's direction)
                value = float(loss.item())
                if not math.isfinite(value):
                    raise _Diverged(value)
                threads = self._tuner.record(time.perf_counter() - began)
                if threads != torch.get_num_threads():
                    torch.set_num_threads(threads)
                self.step_count += 1
                self.samples_seen += int(y.shape[0])
                epoch_loss += value * int(y.shape[0])
                epoch_count += int(y.shape[0])
                self.steps.append(self.step_count)
                self.losses.append(value)
                pending.append(value)
                if len(self.steps) - flush_from >= self.STEPS_FLUSH:
                    flush_from = self._flush_steps(flush_from)
                last = b == self.steps_per_epoch - 1
                if not last and self.step_count % cfg.snapshot_every == 0:
                    flush_from = self._flush_steps(flush_from)
                    previous = self._snapshot(model, layers, previous, pending, epoch_end=False)
                    pending = []
            flush_from = self._flush_steps(flush_from)
            self.epoch = epoch + 1
            test_loss, test_acc = self._evaluate(model, data)
            summary = EpochSummary(epoch=self.epoch, step=self.step_count, train_loss=epoch_loss / epoch_count,
                                   test_loss=test_loss, test_accuracy=test_acc, lr=self.current_lr,
                                   wall_time=self.elapsed)
            self.history.append(summary)
            self._emit(summary)
            previous = self._snapshot(model, layers, previous, pending, epoch_end=True)
            pending = []
        with self._cond:
            self._set_status(Status.FINISHED)

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        cfg = self.config
        if cfg.optimizer == "adam":
            return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        momentum = 0.9 if cfg.optimizer == "momentum" else 0.0
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=momentum, weight_decay=cfg.weight_decay)

    def _checkpoint(self, model: nn.Module, layers: list[ConvLayer], previous: dict[str, torch.Tensor]) -> None:
        """Between batches: run queued commands, honour stop, and wait while paused."""
        while True:
            with self._cond:
                commands, self._commands = self._commands, []
                if not commands:
                    if self._stop:
                        raise _Stopped
                    if not self._want_pause:
                        self._clock(True)
                        return
                    self._set_status(Status.PAUSED)  # now that nothing changes any more (see pause)
                    self._clock(False)
                    self._cond.notify_all()  # pause() waits for this
                    self._cond.wait()
                    continue
            refresh = False
            for command in commands:
                refresh = command() is True or refresh
            if refresh:  # a new probe: show it now, even while paused
                self._snapshot(model, layers, previous, [], epoch_end=False, refresh=True)

    def _snapshot(self, model: nn.Module, layers: list[ConvLayer], previous: dict[str, torch.Tensor],
                  loss_since: list[float], *, epoch_end: bool, refresh: bool = False) -> dict[str, torch.Tensor]:
        """Take, keep and emit a snapshot; `refresh` marks one taken without training (start, new probe)."""
        assert self._probe is not None
        started = time.perf_counter()
        snap = capture(model, layers, previous, self._probe, self._reference, seq=self._seq, step=self.step_count,
                       epoch=self.epoch, samples_seen=self.samples_seen,
                       loss=float(np.mean(loss_since)) if loss_since else float("nan"), lr=self.current_lr,
                       elapsed=self.elapsed, instrument_seconds=self.instrument_seconds, epoch_end=epoch_end)
        self._seq += 1
        self.snapshots.add(snap)
        self._emit(snap)
        if self._running_since is not None:  # a new probe shown while paused costs training nothing
            self.instrument_seconds += time.perf_counter() - started
        if self._pause_after_snapshot and not refresh:  # `step` means: until the network has changed
            with self._cond:
                self._pause_after_snapshot = False
                if not self._stop:
                    self._want_pause = True
                    self._set_status(Status.PAUSED)
        # The next update is measured from here; a refresh leaves the weights untouched.
        return previous if refresh else conv_weights(layers)

    def _evaluate(self, model: nn.Module, data: Tensors) -> tuple[float, float]:
        model.eval()
        total_loss, correct = 0.0, 0
        with torch.no_grad():
            for i in range(0, data.x_test.shape[0], 1000):
                x, y = data.x_test[i:i + 1000], data.y_test[i:i + 1000]
                logits = model(x)
                total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
        model.train()
        n = data.x_test.shape[0]
        return total_loss / n, correct / n

    def _flush_steps(self, start: int) -> int:
        started = time.perf_counter()
        end = len(self.steps)
        if end > start:
            self._emit(StepsEvent(self.steps[start:end], self.losses[start:end]))
        self.instrument_seconds += time.perf_counter() - started
        return end

    def _schedule(self, opt: torch.optim.Optimizer) -> None:
        """Set this batch's learning rate: `lr` scaled by the schedule at this point of the run."""
        factor = 1.0
        if self.config.lr_schedule == "cosine":
            factor = 0.5 * (1 + math.cos(math.pi * self.step_count / self.total_steps))
        self.current_lr = self.lr * factor
        for group in opt.param_groups:
            group["lr"] = self.current_lr

    def _apply_lr(self) -> None:
        """Tell listeners; the rate itself is read by `_schedule` before every batch."""
        with self._cond:
            self._emit(StatusEvent(self.status, self.message, self.epoch, self.step_count, self.lr))

    def _set_probe_later(self, make: Callable[[], Probe]) -> None:
        with self._cond:
            if self.status.final:
                raise StateError(f"This run has ended ({self.status.value}); inspect an image instead.")

            def command() -> bool:
                self._probe = make()
                return True

            self._commands.append(command)
            self._cond.notify_all()

    def _test_probe(self, index: int) -> Probe:
        dataset = get_dataset(self.config.dataset)
        return self._make_probe(dataset.x_test[index], index, int(dataset.y_test[index]), "test")

    def _make_probe(self, pixels: np.ndarray, index: int | None, label: int | None, source: str) -> Probe:
        x = normalise(pixels, self.info)  # (C, H, W)
        return Probe(pixels=pixels, tensor=x.unsqueeze(0).to(self.device), index=index, label=label, source=source)

    # ---- state and events ------------------------------------------------------------------------------

    def _set_status(self, status: Status, message: str | None = None) -> None:
        """Change state and tell listeners; the caller holds self._cond."""
        if status is self.status and message == self.message:
            return
        self.status, self.message = status, message
        if status is not Status.RUNNING:
            self._clock(False)
        self._emit(StatusEvent(status, message, self.epoch, self.step_count, self.lr))

    def _clock(self, running: bool) -> None:
        now = time.perf_counter()
        if running and self._running_since is None:
            self._running_since = now
        elif not running and self._running_since is not None:
            self._elapsed += now - self._running_since
            self._running_since = None

    def _fail(self, status: Status, message: str) -> None:
        self._emit(ErrorEvent(message))
        with self._cond:
            self._set_status(status, message)

    def _emit(self, event: Event) -> None:
        if self._emit_cb is None:
            return
        try:
            self._emit_cb(event)
        except Exception:  # a broken listener must never kill training
            log.exception("event listener failed on %s", type(event).__name__)


class _Diverged(Exception):
    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.value = value
