"""The bare training loop: shapes and counters, same seed same numbers, the loss falls on a fixed batch, and a
loop restored from its state takes the same next steps, bit for bit, as the one that never stopped."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from filterscope.training.config import TrainConfig
from filterscope.training.datasets import get_info
from filterscope.training.loop import Diverged, TrainLoop, model_only, train_count

CPU = torch.device("cpu")
# 320 images at batch 32: ten steps an epoch, a fraction of a second to train.
SMALL: dict[str, Any] = {"dataset": "mnist", "model": "tiny", "batch_size": 32, "train_subset": 320}


def make(**overrides: Any) -> TrainLoop:
    config = TrainConfig(**{**SMALL, **overrides})
    return TrainLoop(config, get_info(config.dataset), CPU)


def train(loop: TrainLoop, steps: int) -> list[float]:
    """`steps` batches, closing each epoch as the engine does; their losses."""
    losses = []
    for _ in range(steps):
        losses.append(loop.train_batch())
        if loop.epoch_complete:
            loop.end_epoch()
    return losses


def weights(loop: TrainLoop) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in loop.model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_shapes_and_counters_follow_the_config() -> None:
    loop = make(epochs=2)
    assert loop.data.x_train.shape == (320, 1, 28, 28) and loop.data.y_train.shape == (320,)
    assert torch.bincount(loop.data.y_train).tolist() == [32] * 10  # the subset is balanced over the classes
    assert loop.data.x_test.shape == (2000, 1, 28, 28)
    assert (loop.steps_per_epoch, loop.total_steps) == (10, 20)
    logits = loop.model(loop.data.x_train[:5])
    assert logits.shape == (5, 10)
    assert [p.shape for p in loop.model.conv1.parameters()] == [(8, 1, 5, 5), (8,)]
    losses = train(loop, 13)
    assert all(math.isfinite(x) for x in losses)
    assert (loop.step_count, loop.samples_seen, loop.epoch, loop.batch) == (13, 13 * 32, 1, 3)
    assert not loop.done
    train(loop, 7)
    assert loop.done and loop.epoch == 2 and loop.samples_seen == 640


def test_a_last_batch_that_does_not_fill_is_still_a_step() -> None:
    loop = make(train_subset=100, batch_size=32)  # 32 + 32 + 32 + 4
    assert loop.steps_per_epoch == 4
    train(loop, 4)
    assert (loop.epoch, loop.samples_seen) == (1, 100)


def test_same_seed_same_numbers_another_seed_others() -> None:
    torch.set_num_threads(torch.get_num_threads())  # the same count for all three: sums in the same order
    config = {"augment": True, "dropout": 0.3, "seed": 4}
    a, b, c = make(**config), make(**config), make(**{**config, "seed": 5})
    assert same(weights(a), weights(b)) and not same(weights(a), weights(c))  # the initial weights too
    la, lb, lc = train(a, 15), train(b, 15), train(c, 15)
    assert la == lb and same(weights(a), weights(b))
    assert la != lc and not same(weights(a), weights(c))


def test_the_loss_falls_on_a_fixed_batch() -> None:
    loop = make(train_subset=32, batch_size=32, lr=0.01, lr_schedule="constant")  # every step: the same 32 images
    losses = train(loop, 40)
    assert abs(losses[0] - math.log(10)) < 0.1  # a small random start guesses every class alike
    assert losses[-1] < 0.25 * losses[0]
    assert np.mean(losses[-5:]) < np.mean(losses[5:10]) < np.mean(losses[:5])


def test_state_and_restore_take_the_same_next_steps_bit_for_bit() -> None:
    config = {"augment": True, "dropout": 0.2, "seed": 9, "epochs": 3, "optimizer": "momentum"}
    original = make(**config)
    train(original, 14)  # mid-epoch: its order was drawn, four batches of it are done
    state = original.state()
    assert state["order_from"] is not None and state["counters"]["batch"] == 4
    restored = TrainLoop.restore(original.config, original.info, CPU, state)
    assert same(weights(restored), weights(original))
    assert (restored.step_count, restored.epoch, restored.batch, restored.samples_seen) == (14, 1, 4, 14 * 32)
    assert train(restored, 12) == train(original, 12)  # across the epoch's end, with shifts and dropout drawn
    assert same(weights(restored), weights(original))
    assert restored.current_lr == original.current_lr


def test_the_state_is_a_copy_that_later_training_does_not_change() -> None:
    loop = make()
    state = loop.state()
    before = {k: v.clone() for k, v in state["model"].items()}
    train(loop, 3)
    assert same(state["model"], before) and not same(state["model"], weights(loop))


def test_a_model_only_checkpoint_cannot_be_trained_on_but_can_be_looked_at() -> None:
    loop = make()
    train(loop, 3)
    state = {"model": loop.model_state()}
    with pytest.raises(ValueError, match="model only; training cannot go on"):
        TrainLoop.restore(loop.config, loop.info, CPU, state)
    model = model_only(loop.config, loop.info, state)
    assert not model.training
    loop.model.eval()
    x = loop.data.x_test[:4]
    with torch.no_grad():
        assert torch.equal(model(x), loop.model(x))


def test_evaluation_draws_nothing_from_the_runs_generator() -> None:
    loop = make()
    train(loop, 2)
    drawn = loop.generator.get_state()
    loss, accuracy = loop.evaluate()
    assert torch.equal(loop.generator.get_state(), drawn) and loop.model.training
    assert math.isfinite(loss) and 0 <= accuracy <= 1
    seen: list[int] = []
    assert loop.evaluate(seen.append) == (loss, accuracy)
    assert seen == [0, 1000]  # told each batch's first test index, before its forward pass


def test_the_cosine_schedule_scales_the_rate_a_person_set() -> None:
    loop = make(epochs=2, lr=0.01)  # 20 steps
    rates = []
    for _ in range(20):
        train(loop, 1)
        rates.append(loop.current_lr)
    assert rates[0] == 0.01 and rates[10] == pytest.approx(0.005)  # the rate of step n is set before it
    assert rates == sorted(rates, reverse=True) and rates[-1] < 0.0001
    assert loop.optimizer.param_groups[0]["lr"] == rates[-1]
    constant = make(lr_schedule="constant", lr=0.01)
    train(constant, 5)
    constant.lr = 0.002  # a person's change applies from the next batch
    train(constant, 1)
    assert constant.current_lr == 0.002


def test_a_non_finite_loss_raises_diverged() -> None:
    loop = make(optimizer="sgd")
    with torch.no_grad():
        loop.model.conv1.weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(Diverged) as info:
        train(loop, 1)
    assert not math.isfinite(info.value.value)


def test_a_subset_larger_than_the_data_set_is_refused_with_a_sentence() -> None:
    config = TrainConfig(dataset="mnist", train_subset=9000)
    with pytest.raises(ValueError, match=r"train_subset 9000 is larger than the mnist training set \(8000 images\)"):
        train_count(config, get_info("mnist"))
    assert train_count(TrainConfig(dataset="mnist"), get_info("mnist")) == 8000
