"""Checkpoints: when a run takes one, what it holds, and its bytes; a model state as arrays.

A checkpoint follows a snapshot (so it sits between two stored moments): an anchor half way through the
run (kept for good: a replay for an old moment starts there), else a rolling one once `checkpoint_seconds`
of training have passed since the last, replacing the one before; a pause, an interrupt and the end take
their own. So a crash loses at most the training since the first snapshot after `checkpoint_seconds`.

The run log stores checkpoints as the bytes `save` makes and snapshots' model states as NumPy arrays (views
of the CPU copies, no extra copy), so that it and the server's other parts never handle torch objects.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch


@dataclass(frozen=True)
class CheckpointEvent:
    """Everything needed to go on from this moment (or, `resumable=False`, to look at the model here).

    `anchor`: kept for good (a replay for inspection may start from it); otherwise it only replaces the
    run's previous non-anchor checkpoint (pause, interrupt). `seq` is the latest snapshot before it.
    """

    seq: int
    step: int
    epoch: int
    anchor: bool
    resumable: bool
    state: dict[str, Any]



# Kept checkpoints a run replays from to show an old snapshot's model, besides the finished model: one, half
# way, bounds a replay to half the run (a second or two for `tiny`); each is ~0.55 MB for `tiny` with Adam,
# against ~3 MB for all its frames, and a default run stays under 4 MB.
ANCHORS = 1
# ...and at least one every this many steps, so that rebuilding any moment replays at most this many (~3 s of
# `tiny` here) however long the run: a 60-epoch run kept one anchor half way, 7,500 steps of replay (~30 s)
# for a moment before it. 625 is half the default run, so the default run keeps its one anchor and its bytes.
MAX_REPLAY_STEPS = 625


class Cadence:
    """When the next checkpoint is due, from the step and the training seconds of the latest one."""

    def __init__(self, total_steps: int, seconds: float, step: int, elapsed: float) -> None:
        self._spacing = max(1, min(-(-total_steps // (ANCHORS + 1)), MAX_REPLAY_STEPS))
        self._seconds = seconds
        self.step, self._elapsed = step, elapsed  # of the latest checkpoint
        self._next_anchor = self._anchor_after(step)

    def due(self, step: int, elapsed: float) -> Literal["anchor", "rolling"] | None:
        """The checkpoint due after a snapshot at `step`, if any."""
        if step >= self._next_anchor:
            return "anchor"
        return "rolling" if elapsed - self._elapsed >= self._seconds else None

    def taken(self, step: int, elapsed: float, anchor: bool) -> None:
        self.step, self._elapsed = step, elapsed
        if anchor and step >= self._next_anchor:
            self._next_anchor = self._anchor_after(step)

    def _anchor_after(self, step: int) -> int:
        """The step from which the next anchor is due: ANCHORS evenly through the run, and one at least every
        MAX_REPLAY_STEPS (the end has its own)."""
        return (step // self._spacing + 1) * self._spacing


def save(state: dict[str, Any]) -> bytes:
    """torch.save's bytes of a checkpoint's state."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def load(data: bytes) -> dict[str, Any]:
    """A checkpoint's state back from `save`'s bytes (tensors and plain values only: weights_only)."""
    return dict(torch.load(io.BytesIO(data), weights_only=True))


def from_arrays(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A model state from NumPy arrays (a snapshot's `model`), sharing their memory (load_state_dict copies it
    in)."""
    return {k: torch.from_numpy(v) for k, v in arrays.items()}
