"""The model at any step of a run, trained again from the nearest checkpoint before it.

A run keeps few checkpoints, not one per snapshot (a `tiny` model with Adam's state is ~0.55 MB, its
snapshot frame ~34 KB): an anchor half way through the run and the final model (and, while it may resume,
its latest). Since the loop is deterministic given its checkpoint and its thread count, the model at any
snapshot is a replay of at most half the run away (a few seconds for a default `tiny` run), on the run's
own thread count: then the replayed weights are the trained ones bit for bit. A run trained with `adaptive`
threads changed its count as it went; its replay runs on one thread and differs in float rounding only
(~1e-7 at first, more over a long run).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from .config import TrainConfig
from .datasets import DatasetInfo
from .loop import TrainLoop

T = TypeVar("T")


def state_at(config: TrainConfig, info: DatasetInfo, step: int, start: dict[str, Any] | None,
             lr_changes: dict[int, float], threads: int | str | None = 1,
             initial: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The model's state after `step` steps, trained from `start` (a checkpoint's loop part; None: step 0).

    `lr_changes`: the base learning rate a person set, by the step after which it applied. `threads`: the
    count the run trained on (its meta's `threads`); "adaptive" or None (a run from before counts were
    recorded) replay on one. `initial`: the model at step 0 of a fine-tuned run (used when `start` is None).
    """
    return replay(config, info, step, start, lr_changes, threads, _model_copy, initial)


def replay(config: TrainConfig, info: DatasetInfo, step: int, start: dict[str, Any] | None,
           lr_changes: dict[int, float], threads: int | str | None, then: Callable[[TrainLoop], T],
           initial: dict[str, torch.Tensor] | None = None) -> T:
    """`then(loop)` for the loop replayed to `step` (its model, optimizer and place in the data, exactly as the
    run had them), on the replay's own thread: what `then` trains further is on the run's thread count too."""
    count = threads if isinstance(threads, int) and threads > 0 else 1
    # A thread of its own: the replay's OpenMP pool (if count > 1) ends with it, instead of staying alive in
    # the caller's (a second pool in the process slows every training thread; threads.py). It inherits the
    # caller's priority, so a replay for a request still yields to training.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay") as pool:
        return pool.submit(_replay, config, info, step, start, lr_changes, count, then, initial).result()


def advance(loop: TrainLoop, step: int, lr_changes: dict[int, float]) -> None:
    """Train `loop` on to `step`, with the base rates a person set where the run had them, closing epochs."""
    while loop.step_count < step:
        if loop.step_count in lr_changes:
            loop.lr = lr_changes[loop.step_count]
        loop.train_batch()
        if loop.epoch_complete:
            loop.end_epoch()


def _model_copy(loop: TrainLoop) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in loop.model.state_dict().items()}


def _replay(config: TrainConfig, info: DatasetInfo, step: int, start: dict[str, Any] | None,
            lr_changes: dict[int, float], threads: int, then: Callable[[TrainLoop], T],
            initial: dict[str, torch.Tensor] | None) -> T:
    torch.set_num_threads(threads)
    device = torch.device("cpu")
    loop = TrainLoop(config, info, device, initial) if start is None else \
        TrainLoop.restore(config, info, device, start)
    if loop.step_count > step:
        raise ValueError(f"the checkpoint is at step {loop.step_count}, after step {step}")
    advance(loop, step, lr_changes)
    return then(loop)
