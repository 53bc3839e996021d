"""Replay: the model at any step, trained again from step 0 or from a checkpoint, is the run's own model at that
step, bit for bit on the same thread count, learning-rate changes by hand included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from filterscope.training.config import TrainConfig
from filterscope.training.datasets import get_info
from filterscope.training.engine import Engine
from filterscope.training.loop import TrainLoop
from filterscope.training.replay import state_at
from filterscope.training.snapshots import Snapshot
from tests.conftest import Recorder

CPU = torch.device("cpu")
# 12 steps an epoch, 2 epochs; everything random drawn from the run's generator (shifts, dropout).
CONFIG = TrainConfig(dataset="mnist", model="tiny", batch_size=32, train_subset=384, epochs=2, augment=True,
                     dropout=0.2, seed=11, snapshot_every=5)
INFO = get_info("mnist")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Training and replay on the same thread count: the same float sums, in the same order."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def same(a: dict[str, torch.Tensor], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], torch.as_tensor(b[k])) for k in a)


def train(loop: TrainLoop, until: int, lr_at: dict[int, float] | None = None) -> None:
    """Train to step `until`, closing epochs; `lr_at[s]`: the base rate a person set after step s."""
    while loop.step_count < until:
        if lr_at and loop.step_count in lr_at:
            loop.lr = lr_at[loop.step_count]
        loop.train_batch()
        if loop.epoch_complete:
            loop.end_epoch()


def test_replay_from_step_0_is_the_engines_model_at_each_snapshot() -> None:
    rec = Recorder()
    engine = Engine(CONFIG, emit=rec, threads=1)
    engine.start()
    assert engine.join(60)
    snaps = {s.step: s for s in rec.of(Snapshot)}
    for step in (0, 3, 12, 15, 24):  # the start, the dense part, the first epoch's end, the next epoch, the end
        assert same(state_at(CONFIG, INFO, step, None, {}), snaps[step].state), step
    assert not same(state_at(CONFIG, INFO, 15, None, {}), snaps[20].state)


def test_replay_from_a_checkpoint_mid_epoch_goes_on_exactly() -> None:
    loop = TrainLoop(CONFIG, INFO, CPU)
    train(loop, 7)
    checkpoint = loop.state()
    train(loop, 19)  # across the epoch's end
    assert same(state_at(CONFIG, INFO, 19, checkpoint, {}), loop.model.state_dict())
    assert same(state_at(CONFIG, INFO, 7, checkpoint, {}), checkpoint["model"])  # nothing to train
    with pytest.raises(ValueError, match="the checkpoint is at step 7, after step 5"):
        state_at(CONFIG, INFO, 5, checkpoint, {})


def test_a_learning_rate_set_by_hand_is_replayed_from_the_step_it_applied_after() -> None:
    config = CONFIG.model_copy(update={"lr_schedule": "constant"})
    changes = {6: 0.0005, 15: 0.02}
    loop = TrainLoop(config, INFO, CPU)
    train(loop, 20, changes)
    assert same(state_at(config, INFO, 20, None, changes), loop.model.state_dict())
    assert not same(state_at(config, INFO, 20, None, {}), loop.model.state_dict())
    assert not same(state_at(config, INFO, 20, None, {7: 0.0005, 15: 0.02}), loop.model.state_dict())  # a step late
    checkpoint_loop = TrainLoop(config, INFO, CPU)
    train(checkpoint_loop, 10, changes)  # the checkpoint holds the rate in force (0.0005); later changes replay
    assert same(state_at(config, INFO, 20, checkpoint_loop.state(), changes), loop.model.state_dict())
