"""What a run reports, as plain data: its statuses and every event a producer hands to the run log.

Torch-free on purpose (NumPy and the standard library only): the run log, the server and a client decode
these without torch, and a producer in another process (a person's script, a cluster worker) sends them as
they are. Arrays are NumPy; what only a producer can make (a frame, a checkpoint's bytes, an analysis's
JSON) travels as `Deferred`: the bytes themselves, or, for a producer in the server's own process, a
function that makes them, called on the store's writer thread so that encoding costs training nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias, TypeVar, Union

import numpy as np

T = TypeVar("T")
Deferred: TypeAlias = Union[T, Callable[[], T]]  # noqa: UP007 (a generic alias needs Union here)


def made(value: Deferred[T]) -> T:
    """The value of a Deferred: called if it is a function."""
    return value() if callable(value) else value


class Status(StrEnum):
    """The states of a run: the one list the server, the API schema and the page share (boot data)."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    INTERRUPTED = "interrupted"  # its producer stopped (or died) while it trained: resumable from a checkpoint
    STOPPED = "stopped"
    FINISHED = "finished"
    DIVERGED = "diverged"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        """True when the run will never train again."""
        return self in FINAL

    @property
    def ended(self) -> bool:
        """True when nothing trains it: final, or interrupted until someone resumes it."""
        return self.final or self is Status.INTERRUPTED


FINAL = frozenset({Status.STOPPED, Status.FINISHED, Status.DIVERGED, Status.FAILED})


def status_table() -> list[dict[str, Any]]:
    """Every status with what it means for a page: the boot data's `statuses`."""
    return [{"name": s.value, "final": s.final, "ended": s.ended} for s in Status]


class StateError(Exception):
    """A control that does not apply in the run's current state."""


@dataclass(frozen=True)
class StatusEvent:
    """The run changed state (or learning rate)."""

    status: Status
    message: str | None
    epoch: int
    step: int
    lr: float
    elapsed: float = 0.0  # seconds of training so far
    instrument_seconds: float = 0.0  # of which on filterscope's own work
    samples_seen: int = 0


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
    train_accuracy: float | None = None  # on a fixed sample of the training images, in eval mode like the test


@dataclass(frozen=True)
class StepsEvent:
    """Training losses of consecutive batches, and each conv layer's update ratio ||ΔW|| / ||W|| in each."""

    steps: list[int]
    losses: list[float]
    ratios: Mapping[str, list[float]]  # may be worked out when first read (recorder.Ratios)


@dataclass(frozen=True)
class ErrorEvent:
    """Training diverged or failed; a StatusEvent follows."""

    message: str


@dataclass(frozen=True)
class WarningEvent:
    """Something about the run a person should know, with its likely cause and fix."""

    kind: str  # "dead", "stalled", "exploding"
    step: int
    message: str


@dataclass(frozen=True)
class FrameEvent:
    """A snapshot, as the run log stores it: where it sits, and its frame (codec.encode_snapshot's bytes).

    `model`: the whole model's state at this moment as NumPy arrays (views of the producer's copies), so an
    uploaded image can be run through the model as it was then without replaying; None when not kept.
    """

    seq: int
    step: int
    epoch: int
    epoch_end: bool
    samples_seen: int
    elapsed: float
    instrument_seconds: float
    frame: Deferred[bytes]
    model: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class CheckpointBlob:
    """Everything needed to go on from this moment (or, `resumable=False`, to look at the model here), saved.

    `anchor`: kept for good (a replay for inspection may start from it); otherwise it only replaces the run's
    previous non-anchor checkpoint. `seq` is the latest snapshot before it; `data` is torch.save's bytes.
    """

    seq: int
    step: int
    epoch: int
    anchor: bool
    resumable: bool
    data: Deferred[bytes]


@dataclass(frozen=True)
class AnalysisReady:
    """What each filter detects at snapshot `seq` (training.analysis), as its JSON body."""

    seq: int
    step: int
    epoch: int
    seconds: float  # training-thread time it cost
    body: Deferred[dict[str, Any]]


# What a run log accepts from any producer.
RunEvent = StepsEvent | FrameEvent | EpochSummary | StatusEvent | ErrorEvent | CheckpointBlob | WarningEvent | \
    AnalysisReady
