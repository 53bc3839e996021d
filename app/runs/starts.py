"""A run's model at any moment, and where a run starts: random weights from its seed, or another run's.

A fine-tuned run (`init_from`) owns its start: the source's weights at the chosen snapshot, fitted to the new
run's model (training/transfer.py), are stored with the new run before its creation is acknowledged, as a
model-only checkpoint at step 0. Its replays, its resume from the start and its inspection at step 0 read
that record, never the source, so deleting or evicting the source takes nothing from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..training import checkpoints
from ..training.config import TrainConfig
from ..training.datasets import get_dataset
from ..training.events import CheckpointBlob, StateError
from ..training.loop import fine_tune_start
from ..training.replay import state_at
from ..training.transfer import Fit

if TYPE_CHECKING:
    from ..record.store import Store
    from .run import Run


@dataclass(frozen=True)
class Start:
    """A fine-tuned run's step 0: the whole model, and what it took from where."""

    run: str
    seq: int
    step: int
    model: dict[str, torch.Tensor]
    fit: Fit
    source: dict[str, Any]  # the source's model and data set, as its config says

    def meta(self, freeze: tuple[str, ...]) -> dict[str, Any]:
        """The new run's `transfer` (the run answer's, docs/api.md)."""
        return {"run": self.run, "seq": self.seq, "step": self.step, **self.source, "taken": list(self.fit.taken),
                "fresh": [f.as_dict() for f in self.fit.fresh], "frozen": list(freeze)}

    def blob(self) -> CheckpointBlob:
        """The start as the run log keeps it: a model-only anchor at step 0, kept for good."""
        data = checkpoints.save({"loop": {"model": self.model}})
        return CheckpointBlob(seq=0, step=0, epoch=0, anchor=True, resumable=False, data=data)


class Starts:
    """Mixed into RunManager: reading models and starts from the run log."""

    store: Store

    def get(self, run_id: str) -> Run | None: raise NotImplementedError

    def start_for(self, config: TrainConfig) -> Start | None:
        """Where a run of `config` starts: None for its seed's random weights, else the source's weights at its
        snapshot, fitted (blocking: the source's model may be rebuilt by replay). ValueError with a sentence
        if the source is unknown, has no such snapshot, cannot give its model, or does not fit."""
        ask = config.init_from
        if ask is None:
            return None
        source = self.get(ask.run)
        if source is None:
            raise ValueError(f"init_from names run {ask.run}, which this server does not hold; start from one of "
                             "the runs GET /api/runs lists.")
        snapshots = list(source.record.snapshots)
        if not snapshots:
            raise ValueError(f"Run {ask.run} has no snapshot yet to start from.")
        ref = snapshots[-1] if ask.seq is None else next((s for s in snapshots if s.seq == ask.seq), None)
        if ref is None:
            raise ValueError(f"Run {ask.run} has no snapshot {ask.seq}; its snapshots are "
                             f"{snapshots[0].seq}-{snapshots[-1].seq}.")
        try:
            state = self.model_state(source, ref.seq, ref.step)
        except StateError as exc:
            raise ValueError(f"Run {ask.run} cannot be a start: {exc}") from None
        info = get_dataset(config.dataset).info
        model, fitted = fine_tune_start(config, info, state, f"run {ask.run}")
        src = source.config
        return Start(ask.run, ref.seq, ref.step, model, fitted, {"model": src.model, "dataset": src.dataset})

    def initial(self, run: Run) -> dict[str, torch.Tensor] | None:
        """A fine-tuned run's model at step 0, from its own record (None for a run from its seed)."""
        config = run.config
        if not isinstance(config, TrainConfig) or config.init_from is None:
            return None
        point = self.store.checkpoint(run.id, at_or_before_step=0)
        if point is None:
            raise StateError("This run's start (the weights it was fine-tuned from) is missing from its record.")
        return dict(checkpoints.load(point.data)["loop"]["model"])

    def replay_from(self, run: Run, step: int) -> tuple[dict[str, Any] | None, dict[str, torch.Tensor] | None]:
        """Where a replay to `step` starts: the loop part of the latest resumable checkpoint at or before it,
        else (None, the run's start): its step 0, its seed's random weights or its fine-tuning start."""
        point = self.store.checkpoint(run.id, at_or_before_step=step, resumable=True)
        if point is not None:
            return checkpoints.load(point.data)["loop"], None
        return None, self.initial(run)

    def model_state(self, run: Run, seq: int, step: int) -> dict[str, torch.Tensor]:
        """The whole model's state at snapshot `seq` (step `step`): kept in memory, a checkpoint, or replayed
        from the nearest checkpoint before it (blocking, up to a few seconds: call it off the event loop)."""
        if not run.capabilities.inspectable:
            raise StateError("This run's model is a person's own, trained by their script: the server has neither "
                             "its code nor its weights at each moment, so an image cannot be run through it here.")
        arrays = run.record.recent_state(seq)
        if arrays is not None:
            return checkpoints.from_arrays(arrays)
        exact = self.store.checkpoint(run.id, at_or_before_step=step)
        if exact is not None and exact.step == step:
            return dict(checkpoints.load(exact.data)["loop"]["model"])
        if not run.capabilities.replayable:
            raise StateError("This run's model at that moment was not recorded, and it cannot be rebuilt by "
                             "training again; only moments with a checkpoint can be inspected.")
        config = run.preset
        start, initial = self.replay_from(run, step)
        return state_at(config, get_dataset(config.dataset).info, step, start, run.record.lr_changes(),
                        threads=run.record.meta.get("threads"),  # the count it trained on: the same sums
                        initial=initial)
