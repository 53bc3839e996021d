"""Overfitting made visible: a fixed, balanced training subset, and each epoch's train accuracy measured as
the test accuracy is (eval mode, a fixed sample), so that the gap between them is real."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from filterscope.training.config import TrainConfig
from filterscope.training.data import balanced_subset
from filterscope.training.datasets import get_dataset
from filterscope.training.engine import Engine, EpochSummary
from filterscope.training.loop import TrainLoop
from filterscope.training.models import build_model
from tests.conftest import Recorder


def test_a_balanced_subset_takes_every_class_in_turn_and_is_the_same_every_time() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 0, 2, 1, 2])
    assert balanced_subset(labels, 6).tolist() == [0, 1, 3, 4, 5, 7]  # two of each, earliest first
    y = get_dataset("mnist").y_train
    pick = balanced_subset(y, 500)
    assert np.array_equal(pick, balanced_subset(y, 500)) and len(set(pick.tolist())) == 500
    assert np.bincount(y[pick], minlength=10).tolist() == [50] * 10


def test_a_run_on_a_subset_trains_on_those_images_only() -> None:
    loop = TrainLoop(TrainConfig(train_subset=100, batch_size=32, seed=3), get_dataset("mnist").info,
                     torch.device("cpu"))
    assert loop.train_count == 100 and loop.steps_per_epoch == 4
    assert loop.data.x_train.shape[0] == 100
    full = get_dataset("mnist")
    keep = balanced_subset(full.y_train, 100)
    assert torch.equal(loop.data.y_train, torch.from_numpy(full.y_train[keep].astype(np.int64)))


def test_a_subset_larger_than_the_training_set_is_refused_with_the_size() -> None:
    with pytest.raises(ValueError, match=r"train_subset 9000 is larger than the mnist training set \(8000"):
        Engine(TrainConfig(train_subset=9000))


def test_train_accuracy_is_the_accuracy_on_a_fixed_training_sample_in_eval_mode() -> None:
    rec = Recorder()
    engine = Engine(TrainConfig(train_subset=300, epochs=2, dropout=0.5, seed=1), emit=rec, threads=1)
    engine.start()
    assert engine.join(120)
    summaries = rec.of(EpochSummary)
    assert len(summaries) == 2 and all(s.train_accuracy is not None for s in summaries)
    # Recompute it from the final model: every one of the 300 images (fewer than the 2,000 test images).
    data = get_dataset("mnist")
    keep = balanced_subset(data.y_train, 300)
    model = build_model("tiny", 1, 28, 10, dropout=0.5)
    model.load_state_dict(engine.loop.model_state())
    model.eval()  # dropout off, as for the test accuracy
    x = engine.loop.data.x_train
    with torch.no_grad():
        predicted = model(x).argmax(1).numpy()
    assert np.array_equal(engine.loop.data.y_train.numpy(), data.y_train[keep])
    assert summaries[-1].train_accuracy == pytest.approx(float((predicted == data.y_train[keep]).mean()))
