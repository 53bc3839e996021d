"""Data sets and models are registry entries: one registered at run time is a choice like the shipped ones."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from pydantic import ValidationError

from filterscope.training import datasets, models
from filterscope.training.config import TrainConfig
from filterscope.training.datasets import Dataset, DatasetInfo
from filterscope.training.datasets.registry import unregister
from filterscope.training.models import PresetInfo


def tiny_dataset(name: str) -> DatasetInfo:
    """Register `name`: 20 training and 10 test images of two classes (a bright left or right half), in memory."""
    info = DatasetInfo(name=name, title="Halves", description="A bright left or right half.", classes=("left", "right"),
                       channels=1, size=28, mean=(0.5,), std=(0.5,), kind="shapes", licence="CC0 (made by the test)",
                       train_count=20, test_count=10)

    def images(count: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(count, dtype=np.int64) % 2
        x = np.zeros((count, 1, 28, 28), dtype=np.uint8)  # (N, C, H, W)
        x[y == 0, :, :, :14] = 255
        x[y == 1, :, :, 14:] = 255
        return x, y

    @datasets.register(info)
    def load() -> Dataset:
        (x_train, y_train), (x_test, y_test) = images(20), images(10)
        return Dataset(info, x_train, y_train, x_test, y_test)

    return info


@contextmanager
def registered_dataset(name: str = "halves") -> Iterator[DatasetInfo]:
    """A data set registered for the block's duration only."""
    info = tiny_dataset(name)
    try:
        yield info
    finally:
        unregister(name)


def test_a_data_set_registered_at_run_time_can_be_named_and_loaded() -> None:
    with registered_dataset() as info:
        config = TrainConfig(dataset=info.name)
        assert config.dataset == "halves"
        assert TrainConfig.model_json_schema()["properties"]["dataset"]["enum"][-1] == "halves"
        assert datasets.get_dataset("halves").x_train.shape == (20, 1, 28, 28)
    assert "halves" not in datasets.names()
    with pytest.raises(ValidationError, match="registered data set"):
        TrainConfig(dataset="halves")


def test_a_model_registered_at_run_time_can_be_named() -> None:
    shipped = models.get("tiny")
    models.register(PresetInfo("mine", "Mine", "a person's own model", shipped.build))
    try:
        assert TrainConfig(model="mine").model == "mine"
        assert TrainConfig.model_json_schema()["properties"]["model"]["enum"] == ["tiny", "lenet5", "classic", "mine"]
        assert models.build_model("mine", 1, 28, 10) is not None
        with pytest.raises(ValueError, match="registered twice"):
            models.register(PresetInfo("mine", "Mine", "again", shipped.build))
    finally:
        models.unregister("mine")
    assert models.names() == ("tiny", "lenet5", "classic")
    with pytest.raises(KeyError, match="unknown model 'mine'"):
        models.get("mine")


@pytest.mark.parametrize(("field", "kind", "known"), [
    ("dataset", "data set", "'mnist', 'fashion-mnist', 'shapes' or 'shapes-color'"),
    ("model", "model", "'tiny', 'lenet5' or 'classic'"),
])
def test_an_unknown_name_is_refused_with_the_registered_ones(field: str, kind: str, known: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TrainConfig.model_validate({field: "nope"})
    (error,) = caught.value.errors()
    assert error["loc"] == (field,) and error["type"] == "unregistered"
    assert error["msg"] == f"Input should be a registered {kind}: {known}"


def test_unregistering_an_unknown_name_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="unknown data set"):
        unregister("nope")
    with pytest.raises(KeyError, match="unknown model"):
        models.unregister("nope")
