"""The model at any step of a run, trained again from the nearest checkpoint before it.

A run keeps few checkpoints, not one per snapshot (a `tiny` model with Adam's state is ~0.55 MB, its
snapshot frame ~34 KB): an anchor half way through the run and the final model (and, while it may resume,
its latest). Since the loop is deterministic given its checkpoint, the model at any snapshot is a replay of
at most half the run away (a few seconds for a default `tiny` run), on one background thread. With
a fixed thread count the replayed weights are the trained ones bit for bit; otherwise they differ in float
rounding only (~1e-7), far below what a feature map or a prediction shows.
"""

from __future__ import annotations

from typing import Any

import torch

from app.training.config import TrainConfig
from app.training.datasets import DatasetInfo
from app.training.loop import TrainLoop


def state_at(config: TrainConfig, info: DatasetInfo, step: int, start: dict[str, Any] | None,
             lr_changes: dict[int, float]) -> dict[str, torch.Tensor]:
    """The model's state after `step` steps, trained from `start` (a checkpoint's loop part; None: step 0).

    `lr_changes`: the base learning rate a person set, by the step after which it applied.
    """
    device = torch.device("cpu")
    loop = TrainLoop(config, info, device) if start is None else TrainLoop.restore(config, info, device, start)
    if loop.step_count > step:
        raise ValueError(f"the checkpoint is at step {loop.step_count}, after step {step}")
    while loop.step_count < step:
        if loop.step_count in lr_changes:
            loop.lr = lr_changes[loop.step_count]
        loop.train_batch()
        if loop.epoch_complete:
            loop.end_epoch()
    return {k: v.detach().to("cpu", copy=True) for k, v in loop.model.state_dict().items()}
