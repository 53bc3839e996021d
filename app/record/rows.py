"""What the store hands back: a run as stored, a checkpoint, what another process appended (a tail)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class StoredRun:
    """One run as the store holds it (everything but frames and checkpoints, which are read on demand)."""

    id: str
    created_at: float
    token_hash: str
    meta: dict[str, Any]
    state: dict[str, Any]
    epochs: list[dict[str, Any]]
    steps: list[int] = field(default_factory=list)
    losses: list[float | None] = field(default_factory=list)
    ratios: dict[str, list[float | None]] = field(default_factory=dict)  # per conv layer, one per step
    snapshots: list[tuple[int, int, int, bool]] = field(default_factory=list)  # (seq, step, epoch, epoch_end)
    events: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0  # bytes of its rows' blobs and texts
    analyses: list[tuple[int, int, float]] = field(default_factory=list)  # (seq, step, seconds)
    event_n: int = 0  # the store's number of its latest event: a follower reads on from there


@dataclass(frozen=True)
class Checkpoint:
    """A stored checkpoint; `data` is torch.save's bytes (training.checkpoints.load reads them)."""

    step: int
    seq: int
    epoch: int
    anchor: bool
    resumable: bool
    data: bytes


@dataclass(frozen=True)
class Tail:
    """What a run gained since a follower last looked (Store.tail), in the order it was committed."""

    state: dict[str, Any]
    epochs: list[dict[str, Any]]
    steps: list[tuple[int, np.ndarray, np.ndarray | None]]  # (first, losses, ratios (layers * n) or None)
    frames: list[tuple[tuple[int, int, int, bool], int, bytes]]  # ((seq, step, epoch, epoch_end), size, frame)
    events: list[tuple[int, str]]  # (n, body as sent)
    analyses: list[tuple[int, int, float, int]]  # (seq, step, seconds, size)
    checkpoint_bytes: int


@contextmanager
def reading(c: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: what the block reads from several tables agrees (another process may commit)."""
    c.execute("BEGIN")
    try:
        yield
    finally:
        c.execute("COMMIT")


