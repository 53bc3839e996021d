"""The socket's text messages, one typed definition each (docs/protocol.md). Torch-free: a client decodes
with this module and `codec.decode_frame` alone.

Each message knows its `type` tag and whether a slow client may skip it; `text()` is what goes on the wire.
Snapshots are binary frames (codec.py); everything else is one of these.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

# 2: pre-activation maps in frames (the maps after ReLU derived from them), update ratios, warnings.
PROTOCOL_VERSION = 2


def finite(x: float | None) -> float | None:
    """JSON has no NaN: missing numbers travel as null."""
    return x if x is None or math.isfinite(x) else None


_POW10 = 10.0 ** np.arange(23)  # 1e0 ... 1e22: every one an exact double, so scaling by them is one rounding


def significant4(a: np.ndarray) -> np.ndarray:
    """Each value rounded to 4 significant digits, the same doubles as float(f"{v:.4g}") (tested) at a tenth of
    the time: update ratios travel at 4 digits, and start-up reads every stored step of every run. Values that
    need a power of ten past 1e22 (beyond about 1e-19..1e25, where 10**k is no longer exact) are formatted."""
    x = np.asarray(a, np.float64)
    out = np.where(x == 0, x, np.nan)  # both zeros keep their sign, as formatting does
    ok = np.isfinite(x) & (x != 0)
    v = x[ok]
    keep = 3 - np.floor(np.log10(np.abs(v))).astype(np.int64)  # decimals to keep
    near = np.abs(keep) < len(_POW10)
    p10 = _POW10[np.where(near, np.abs(keep), 0)]
    got = np.where(keep >= 0, np.round(v * p10) / p10, np.round(v / p10) * p10)
    if not near.all():
        got[~near] = [float(f"{value:.4g}") for value in v[~near].tolist()]
    out[ok] = got
    return out


def nulls(a: np.ndarray) -> list[float | None]:
    """float64 values as a list, None where not finite (JSON's null). Start-up reads every stored step of every
    run through here (750,000 values for 200 runs): only the few that are not finite are looked at one by one."""
    values: list[float | None] = a.tolist()
    for i in np.flatnonzero(~np.isfinite(a)).tolist():
        values[i] = None
    return values


@dataclass(frozen=True)
class TextMessage:
    type: ClassVar[str]
    droppable: ClassVar[bool] = False  # only snapshots may be skipped; none of these

    def body(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}

    def text(self) -> str:
        return json.dumps(self.body(), separators=(",", ":"))


@dataclass(frozen=True)
class Hello(TextMessage):
    """First on every connection: the run as GET /api/runs/{id} answers it, its history included."""

    type: ClassVar[str] = "hello"
    run: dict[str, Any]

    def body(self) -> dict[str, Any]:
        return {"type": self.type, "v": PROTOCOL_VERSION, "run": self.run}


@dataclass(frozen=True)
class Steps(TextMessage):
    """Training loss of consecutive batches (null where it was not finite), and per conv layer the update ratio
    ||ΔW|| / ||W|| of each of those batches."""

    type: ClassVar[str] = "steps"
    steps: list[int]
    losses: list[float | None]
    ratios: dict[str, list[float | None]]


@dataclass(frozen=True)
class Epoch(TextMessage):
    """What an epoch achieved."""

    type: ClassVar[str] = "epoch"
    epoch: int
    step: int
    train_loss: float | None
    test_loss: float | None
    test_accuracy: float | None
    lr: float
    wall_time: float
    train_accuracy: float | None = None


@dataclass(frozen=True)
class StatusChange(TextMessage):
    """The run changed state or learning rate; `lr_changes`: every learning rate set by hand so far, as the
    run's answer lists them ({step, lr}: set after that step), so a client never works them out itself."""

    type: ClassVar[str] = "status"
    status: str
    message: str | None
    epoch: int
    step: int
    lr: float
    samples_seen: int = 0
    lr_changes: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class WarningMessage(TextMessage):
    """Something a person should know about the run (it died, stalled, or its loss explodes), once per kind."""

    type: ClassVar[str] = "warning"
    kind: str
    step: int
    message: str


@dataclass(frozen=True)
class Error(TextMessage):
    """Training diverged or failed; a status follows."""

    type: ClassVar[str] = "error"
    message: str


@dataclass(frozen=True)
class Analysed(TextMessage):
    """Snapshot `seq`'s filter analysis is stored: GET /api/runs/{id}/snapshots/{seq}/top/{layer} has it."""

    type: ClassVar[str] = "analysis"
    seq: int
    step: int
    epoch: int
    analysis_seconds: float  # the run's analyses so far, in training-thread seconds
