"""A run record's half that follows another process: what that process committed, read back (Store.tail),
taken in and published as if this process had appended it (follow.py decides when to look)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..streaming.protocol import Analysed, Epoch, Steps, nulls, significant4
from .store import Tail

Message = str | bytes


@dataclass(frozen=True)
class SnapshotRef:
    seq: int
    step: int
    epoch: int
    epoch_end: bool


class Follows:
    """Mixed into RunRecord, whose state and `_committed` it uses."""

    _lock: threading.Lock
    _n: int
    _event_n: int
    _checkpoint_bytes: int
    ratios: dict[str, list[float | None]]
    snapshots: list[SnapshotRef]
    steps: list[int]
    epochs: list[dict[str, Any]]
    analyses: dict[int, tuple[int, float]]
    state: dict[str, Any]
    _pending_state: dict[str, Any]
    _pending_epochs: list[dict[str, Any]]
    size: int

    def _committed(self, n: int, message: Message, *, snapshot: SnapshotRef | None = None,
                   steps: tuple[list[int], list[float | None], list[list[float | None]]] | None = None,
                   epoch: dict[str, Any] | None = None, event: dict[str, Any] | None = None,
                   state: dict[str, Any] | None = None) -> None:
        raise NotImplementedError
    def _grow(self, size: int) -> None: raise NotImplementedError

    def marks(self) -> tuple[int, int, int, int]:
        """What this record has seen of the store: (latest seq, latest step, latest event n, latest analysis)."""
        with self._lock:
            return (self.snapshots[-1].seq if self.snapshots else -1, self.steps[-1] if self.steps else -1,
                    self._event_n, max(self.analyses, default=-1))

    def follow(self, tail: Tail) -> None:
        """Take in what another process committed (Store.tail), publishing it as if appended here."""
        names = list(self.ratios)
        for first, losses, per_layer in tail.steps:
            steps = list(range(first, first + len(losses)))
            rows_np = per_layer.reshape(-1, len(losses)) if per_layer is not None else None
            rows: list[list[float | None]] = [
                nulls(significant4(rows_np[i])) if rows_np is not None and i < rows_np.shape[0]
                else [None] * len(losses) for i in range(len(names))]
            lost = nulls(losses.astype(np.float64))
            text = Steps(steps, lost, dict(zip(names, rows, strict=True))).text()
            self._grow(losses.nbytes + (per_layer.nbytes if per_layer is not None else 0))
            self._committed(self._next(), text, steps=(steps, lost, rows))
        for (seq, step, epoch, epoch_end), size, frame in tail.frames:
            self._grow(size)
            self._committed(self._next(), frame, snapshot=SnapshotRef(seq, step, epoch, epoch_end))
        for body in tail.epochs[len(self.epochs):]:
            self._committed(self._next(), Epoch(**body).text(), epoch=body)
        for seq, step, seconds, size in tail.analyses:
            self._grow(size)
            with self._lock:
                self.analyses[seq] = (step, seconds)
                total = sum(s for _, s in self.analyses.values())
            epoch = next((r.epoch for r in reversed(self.snapshots) if r.seq == seq), 0)
            self._committed(self._next(), Analysed(seq, step, epoch, round(total, 3)).text())
        for n, text in tail.events:
            with self._lock:
                self._event_n = n
            self._committed(self._next(), text, event=json.loads(text), state=tail.state)
        with self._lock:
            self.state = dict(tail.state)
            self._pending_state = dict(tail.state)
            self._pending_epochs = list(self.epochs)
            self.size += tail.checkpoint_bytes - self._checkpoint_bytes
            self._checkpoint_bytes = tail.checkpoint_bytes

    def _next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n

