"""The run handle for a thread of this process: an Engine, and its events turned torch-free for the log.

The engine reports rich events (snapshots holding tensors, checkpoints holding state dicts); here each
becomes what the run log takes (training/events.py): a frame to encode, checkpoint bytes to save, a model
state as NumPy views. Encoding is deferred to the store's writer thread, off the training thread, which is
why these are functions and not bytes; a producer in another process hands the same events to a record of
its own, so they are made there, in the process that trains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..streaming.codec import encode_snapshot
from ..training import checkpoints
from ..training.analysis import AnalysisEvent
from ..training.config import TrainConfig
from ..training.engine import CheckpointEvent, Engine, Event
from ..training.events import AnalysisReady, CheckpointBlob, FrameEvent, RunEvent, Status
from ..training.snapshots import Snapshot
from ..training.threads import serial_torch
from .handle import Progress


def log_event(event: Event | AnalysisEvent) -> RunEvent:
    """An engine event as the run log takes it (torch-free; heavy encoding deferred)."""
    if isinstance(event, Snapshot):
        snap = event
        return FrameEvent(seq=snap.seq, step=snap.step, epoch=snap.epoch, epoch_end=snap.epoch_end,
                          samples_seen=snap.samples_seen, elapsed=snap.elapsed,
                          instrument_seconds=snap.instrument_seconds, frame=lambda: encode_snapshot(snap),
                          model=snap.model)
    if isinstance(event, CheckpointEvent):
        state = event.state
        return CheckpointBlob(seq=event.seq, step=event.step, epoch=event.epoch, anchor=event.anchor,
                              resumable=event.resumable, data=lambda: checkpoints.save(state))
    if isinstance(event, AnalysisEvent):
        return AnalysisReady(seq=event.seq, step=event.step, epoch=event.epoch, seconds=event.seconds,
                             body=event.body)
    return event


class LocalRun:
    """A run trained by a thread of this process (see RunHandle)."""

    kind = "local"

    def __init__(self, config: TrainConfig, sink: Callable[[RunEvent], None] | None = None, *,
                 threads: int | str = 0, checkpoint_seconds: float = 3.0, checkpoint: bytes | None = None,
                 first_seq: int = 0, initial: dict[str, torch.Tensor] | None = None) -> None:
        """Build the run's engine (ValueError with a sentence if the config cannot train); `checkpoint`: go on
        from this stored checkpoint, else start from `initial` (a fine-tuned run's step 0) or the seed.
        `threads`: a setting (0, N, adaptive) or what the run's meta recorded.
        Events go to `sink` (set later with `listen`)."""
        serial_torch()  # building the model here must not start a second OpenMP pool (see threads.py)
        self._sink = sink
        state = None if checkpoint is None else checkpoints.load(checkpoint)
        self.engine = Engine(config, emit=self._emit, threads=threads, checkpoint_seconds=checkpoint_seconds,
                             checkpoint=state, first_seq=first_seq, initial=initial)

    def listen(self, sink: Callable[[RunEvent], None]) -> None:
        """Send every event from now on to `sink` (before `start`)."""
        self._sink = sink

    def _emit(self, event: Event) -> None:
        if self._sink is not None:
            self._sink(log_event(event))

    def meta(self) -> dict[str, Any]:
        """What the run log keeps of the run besides its history: config, geometry, classes, thread count."""
        e = self.engine
        return {"config": e.config.model_dump(), "steps_per_epoch": e.loop.steps_per_epoch,
                "total_steps": e.loop.total_steps,
                "threads": e.threads,  # the count it trains on (or "adaptive"): resume and replay use it
                "classes": list(e.info.classes),
                "layers": [{"name": x.name, "in_channels": x.in_channels, "out_channels": x.out_channels,
                            "kernel": list(x.kernel), "fmap": list(x.fmap), "pool": x.pool} for x in e.layers]}

    @property
    def status(self) -> Status:
        return self.engine.status

    @property
    def started(self) -> bool:
        return self.engine.started

    def progress(self) -> Progress:
        e = self.engine
        return Progress(epoch=e.epoch, step=e.step_count, samples_seen=e.samples_seen, elapsed=e.elapsed,
                        instrument_seconds=e.instrument_seconds, lr=e.lr)

    def start(self) -> None:
        self.engine.start()

    def pause(self) -> None:
        self.engine.pause(wait=0)

    def resume(self) -> None:
        self.engine.resume()

    def step(self) -> None:
        self.engine.step()

    def stop(self) -> None:
        self.engine.stop()

    def interrupt(self) -> None:
        self.engine.interrupt()

    def set_lr(self, lr: float) -> None:
        self.engine.set_lr(lr)

    def set_probe_index(self, index: int) -> None:
        self.engine.set_probe_index(index)

    def set_probe_pixels(self, pixels: np.ndarray) -> None:
        self.engine.set_probe_pixels(pixels)

    def join(self, timeout: float | None = None) -> bool:
        return self.engine.join(timeout)
