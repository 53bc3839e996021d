"""One run as the server holds it: its record (the one truth of its state and history) and its handle."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..record.record import RunRecord
from ..record.store import token_hash
from ..training.config import TrainConfig
from ..training.datasets.registry import names as dataset_names
from ..training.events import StateError, Status
from ..training.inference import Inspector
from ..watching.config import WatchedConfig
from .handle import Capabilities, RunHandle


def config_of(meta: dict[str, Any]) -> TrainConfig | WatchedConfig:
    """A stored run's config: a watched run's says so (source "watch"); every other is a preset's."""
    config = meta["config"]
    if isinstance(config, dict) and config.get("source") == "watch":
        return WatchedConfig.model_validate(config)
    name = config.get("dataset") if isinstance(config, dict) else None
    if isinstance(name, str) and name not in dataset_names():
        # A person's own data set, deleted since: the run's history stays viewable, so every other field is
        # validated as usual and the name kept as it was (training or rebuilding it again is refused).
        return TrainConfig.model_validate({**config, "dataset": "mnist"}).model_copy(update={"dataset": name})
    return TrainConfig.model_validate(config)


class NoModel:
    """The inspector of a run whose model the server cannot build (a watched run): it has no moment's model."""

    def has(self, seq: int) -> bool:
        return False

    def run(self, seq: int, state: object, x: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        raise StateError("This run's model is a person's own: an image cannot be run through it here.")

    def clear(self) -> None:
        pass


@dataclass
class Run:
    """A run: its record, and its handle while this server trains it (or may again: paused).

    `producer`: while another process trains it (followed through the run log), who that is ({pid, what}).
    """

    record: RunRecord
    handle: RunHandle | None
    inspector: Inspector | NoModel  # NoModel: the server cannot rebuild the model (a watched run)
    watchers: Callable[[], int] = field(default=lambda: 0)
    queue_position: Callable[[], int | None] = field(default=lambda: None)
    producer: dict[str, Any] | None = None
    worker: dict[str, Any] | None = None  # where a run on a Ray cluster trains: {node, ip, pid} (runs/cluster.py)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def config(self) -> TrainConfig | WatchedConfig:
        """A built-in preset's config, or what a watched script said of its own model."""
        return config_of(self.record.meta)

    @property
    def preset(self) -> TrainConfig:
        """The config of a run this server can build (StateError for a watched run: its model is the script's)."""
        config = self.config
        if not isinstance(config, TrainConfig):
            raise StateError(f"This run is {config.model}, trained by a person's own script: the server cannot "
                             "build it, so it cannot train, resume or rebuild it.")
        return config

    @property
    def kind(self) -> str:
        """"local" (a thread of a server), "process" (`filterscope train`) or "watch" (a person's script under
        `filterscope.watch`): who made it."""
        return str(self.record.meta.get("kind", "local"))

    @property
    def capabilities(self) -> Capabilities:
        """As stored with the run, less what needs a model the server can no longer build (a run whose data
        set, a person's own, was deleted since)."""
        caps = Capabilities.of(self.record.meta)
        if isinstance(self.inspector, NoModel) and self.kind != "watch":
            caps = replace(caps, resumable=False, replayable=False, inspectable=False)
        return caps

    def not_inspectable(self) -> str:
        """Why no image can be run through this run's model here (when capabilities say so)."""
        if self.kind == "watch":
            return ("This run is a person's own model, recorded by their script (filterscope.watch): the server "
                    "has neither its code nor its weights at each moment, so an image cannot be run through it here.")
        return (f"This run trained on {self.config.dataset!r}, a data set deleted since: its model cannot be built "
                "here any more, so an image cannot be run through it; its history stays as it is.")

    @property
    def status(self) -> Status:
        """As committed to the run log: what the API, the socket and the store all say."""
        return Status(self.record.status)

    @property
    def computing(self) -> bool:
        """True while the run holds a training slot: running, or about to (a paused run holds none)."""
        handle = self.handle
        return handle is not None and handle.started and self.status in (Status.RUNNING, Status.QUEUED)

    @property
    def waiting(self) -> bool:
        """True while the run waits in this server's queue for a training slot (it has not trained yet)."""
        handle = self.handle
        return self.producer is None and self.status is Status.QUEUED and not (handle is not None and handle.started)

    def owned_by(self, token: str) -> bool:
        return secrets.compare_digest(token_hash(token), self.record.token_hash)

    def describe(self) -> dict[str, Any]:
        """The run as the API answers it (see schemas.RunOut): what the store holds, with a live handle's
        progress counters. Status and history are both as committed, so they always agree."""
        rec = self.record
        state = dict(rec.state)
        handle = self.handle
        if handle is not None and handle.started and not self.status.ended:
            p = handle.progress()
            state.update(epoch=max(state["epoch"], p.epoch), step=p.step, samples_seen=p.samples_seen,
                         elapsed=round(p.elapsed, 3), instrument_seconds=round(p.instrument_seconds, 3), lr=p.lr)
        return {
            "id": rec.id, "created_at": rec.created_at, **rec.meta, **state, "watchers": self.watchers(),
            "queue_position": self.queue_position(), "kind": self.kind,
            "capabilities": self.capabilities.as_dict(), "producer": self.producer,
            "worker": self.worker if handle is not None and not self.status.ended else None,
            "history": list(rec.epochs), "snapshots": len(rec.snapshots), "bytes": rec.size,
            "warnings": rec.warnings(),
            "lr_changes": [{"step": step, "lr": lr} for step, lr in rec.lr_changes().items()],
            **rec.analysis_fields(),
        }

    def refuse_controls(self) -> str | None:
        """Why this server cannot control the run now (None if it can)."""
        if self.producer is not None:
            who = self.producer.get("what") or "another process"
            return (f"This run is trained by process {self.producer.get('pid', '?')} ({who}), not by this server: "
                    "pause, step, stop and the learning rate apply only in that process.")
        if self.handle is None and not self.waiting:
            if self.status is Status.INTERRUPTED:
                return f"This run was interrupted; resume it first (POST /api/runs/{self.id}/resume)."
            return f"This run has ended ({self.status.value}); start a new run to train again."
        return None
