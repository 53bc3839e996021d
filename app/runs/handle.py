"""A run handle: the one interface the manager and the routes use to drive a run, whoever trains it.

Today's implementations: `LocalRun` (a thread of this server, local.py). A run trained by another process
(`filterscope train`, a person's script under `filterscope.watch`) has no handle here: the server follows its
log (follow.py) and says why its controls are absent. Every control returns at once; what it leads to arrives
as the run's events (a pause is `paused` once the training thread has got there).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from ..training.events import Status


@dataclass(frozen=True)
class Capabilities:
    """What the server can do with a run: kept with the run, so each is a fact, not an assumption."""

    controllable: bool  # pause, resume, step, stop, lr and probe apply (the server's own thread trains it)
    resumable: bool  # once interrupted, the server can go on from its last checkpoint
    replayable: bool  # an old moment's model can be rebuilt by training again from a checkpoint
    inspectable: bool  # an uploaded image can be run through the model at a stored moment

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)

    @classmethod
    def of(cls, meta: dict[str, Any]) -> Capabilities:
        """A stored run's capabilities (runs stored before they were recorded are the server's own)."""
        return cls(**meta.get("capabilities", LOCAL.as_dict()))


LOCAL = Capabilities(controllable=True, resumable=True, replayable=True, inspectable=True)
# A built-in preset trained by `filterscope train`: the server cannot reach into that process, but the run's
# checkpoints and config are those of any preset, so once it has ended the server can resume or replay it.
PROCESS = Capabilities(controllable=False, resumable=True, replayable=True, inspectable=True)
# A person's own model recorded by `filterscope.watch` from their script: the server has neither the model's
# code nor its data, so it shows what was recorded and nothing needs the model rebuilt.
WATCH = Capabilities(controllable=False, resumable=False, replayable=False, inspectable=False)


@dataclass(frozen=True)
class Progress:
    """Where a live run is, between its stored moments."""

    epoch: int
    step: int
    samples_seen: int
    elapsed: float
    instrument_seconds: float
    lr: float


class RunHandle(Protocol):
    """Drives one run. Controls never block: each raises StateError (or ValueError) at once if it does not
    apply, else takes effect at the run's next batch boundary."""

    kind: str  # "local": a thread of this server

    @property
    def status(self) -> Status: ...

    @property
    def started(self) -> bool: ...

    def progress(self) -> Progress: ...

    def start(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def step(self) -> None: ...

    def stop(self) -> None: ...

    def interrupt(self) -> None: ...

    def set_lr(self, lr: float) -> None: ...

    def set_probe_index(self, index: int) -> None: ...

    def set_probe_pixels(self, pixels: np.ndarray) -> None: ...

    def join(self, timeout: float | None = None) -> bool: ...
