"""Checkpoints: when anchors fall (a rebuild replays a bounded number of steps however long the run), and
their bytes and model arrays round-trip exactly."""

from __future__ import annotations

import numpy as np
import torch

from filterscope.training import checkpoints
from filterscope.training.checkpoints import MAX_REPLAY_STEPS, Cadence


def anchors(total: int) -> list[int]:
    """The steps (snapshots every 5) after which an anchor is taken, for a run of `total` steps."""
    cadence, taken = Cadence(total, seconds=1e9, step=0, elapsed=0.0), []
    for step in range(5, total, 5):
        if cadence.due(step, 0.0) == "anchor":
            taken.append(step)
            cadence.taken(step, 0.0, anchor=True)
    return taken


def test_the_default_run_keeps_one_anchor_half_way() -> None:
    assert anchors(1250) == [625]


def test_a_long_run_keeps_an_anchor_every_max_replay_steps_so_a_rebuild_stays_short() -> None:
    taken = anchors(15_000)  # 60 epochs of the default
    gaps = np.diff([0, *taken, 15_000])
    assert len(taken) == 15_000 // MAX_REPLAY_STEPS - 1 and gaps.max() <= MAX_REPLAY_STEPS


def test_a_rolling_checkpoint_follows_the_first_snapshot_past_the_seconds() -> None:
    cadence = Cadence(10_000, seconds=3.0, step=0, elapsed=0.0)
    assert cadence.due(20, 2.9) is None and cadence.due(40, 3.1) == "rolling"
    cadence.taken(40, 3.1, anchor=False)
    assert cadence.due(60, 5.0) is None and cadence.due(80, 6.2) == "rolling"


def test_bytes_and_arrays_round_trip_exactly() -> None:
    state = {"loop": {"model": {"w": torch.randn(3, 4)}, "step": 7}}
    back = checkpoints.load(checkpoints.save(state))
    assert back["loop"]["step"] == 7 and torch.equal(back["loop"]["model"]["w"], state["loop"]["model"]["w"])
    arrays = {"w": np.random.default_rng(0).standard_normal((2, 2)).astype(np.float32)}
    back_w = checkpoints.from_arrays(arrays)["w"]
    assert isinstance(back_w, torch.Tensor) and np.array_equal(back_w.numpy(), arrays["w"])
