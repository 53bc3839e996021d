"""Invariants of every registered data set, and of the registry that hands them out."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest

from filterscope.training import datasets
from filterscope.training.config import TrainConfig
from filterscope.training.datasets import DATASET_NAMES, Dataset, get_dataset, get_info, list_datasets
from filterscope.training.datasets import shapes as shapes_module
from filterscope.training.datasets.registry import register


@pytest.fixture(scope="module", params=DATASET_NAMES)
def dataset(request: pytest.FixtureRequest) -> Dataset:
    """Each registered data set, loaded once for this module."""
    return get_dataset(request.param)


def _digests(x: np.ndarray) -> set[bytes]:
    """One hash per image, to compare image sets without comparing every pair."""
    return {hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in x}


def test_names_match_the_run_config() -> None:
    assert TrainConfig.model_json_schema()["properties"]["dataset"]["enum"] == list(DATASET_NAMES)
    assert [info.name for info in list_datasets()] == list(DATASET_NAMES)
    assert DATASET_NAMES[0] == "mnist"  # the page's default comes first


def test_unknown_name_is_a_clear_key_error() -> None:
    with pytest.raises(KeyError, match="unknown data set 'nope'.*mnist"):
        get_info("nope")
    with pytest.raises(KeyError, match="unknown data set 'nope'"):
        get_dataset("nope")


def test_registering_a_name_twice_fails() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register(get_info("mnist"))(lambda: get_dataset("mnist"))


def test_loads_are_cached_and_shared_between_threads() -> None:
    datasets.clear_cache()
    results: list[Dataset] = []
    barrier = threading.Barrier(8)

    def load() -> None:
        barrier.wait()
        results.append(get_dataset("shapes"))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(result is results[0] for result in results)
    assert get_dataset("shapes") is results[0]


def test_shapes_and_dtypes_match_info(dataset: Dataset) -> None:
    info = dataset.info
    assert info is get_info(info.name)
    assert info.channels in (1, 3)
    assert len(info.mean) == len(info.std) == info.channels
    for x, y, count in (
        (dataset.x_train, dataset.y_train, info.train_count),
        (dataset.x_test, dataset.y_test, info.test_count),
    ):
        assert x.shape == (count, info.channels, info.size, info.size)  # (N, C, H, W)
        assert x.dtype == np.uint8
        assert y.shape == (count,)
        assert y.dtype == np.int64


def test_every_class_in_both_splits(dataset: Dataset) -> None:
    n_classes = len(dataset.info.classes)
    assert len(set(dataset.info.classes)) == n_classes
    for y in (dataset.y_train, dataset.y_test):
        assert y.min() >= 0
        assert y.max() < n_classes
        # No class is starved: the smallest has at least half the average share.
        assert np.bincount(y, minlength=n_classes).min() >= len(y) / n_classes / 2


def test_test_split_is_stratified(dataset: Dataset) -> None:
    # Each class's share of the test set matches its share of the whole set (the documented ~20 %).
    n_classes = len(dataset.info.classes)
    train = np.bincount(dataset.y_train, minlength=n_classes)
    test = np.bincount(dataset.y_test, minlength=n_classes)
    expected = (train + test) * len(dataset.y_test) / (len(dataset.y_train) + len(dataset.y_test))
    assert np.abs(test - expected).max() <= 1


def test_train_and_test_share_no_image(dataset: Dataset) -> None:
    assert not _digests(dataset.x_train) & _digests(dataset.x_test)


def test_no_image_is_blank(dataset: Dataset) -> None:
    for x in (dataset.x_train, dataset.x_test):
        flat = x.reshape(len(x), -1).astype(np.int16)  # (N, C*H*W)
        assert (flat.max(axis=1) - flat.min(axis=1)).min() >= 64


def test_mean_and_std_match_the_training_images(dataset: Dataset) -> None:
    scaled = dataset.x_train / 255.0  # (N, C, H, W) on the [0, 1] scale
    np.testing.assert_allclose(scaled.mean(axis=(0, 2, 3)), dataset.info.mean, atol=1e-3)
    np.testing.assert_allclose(scaled.std(axis=(0, 2, 3)), dataset.info.std, atol=1e-3)


def test_loading_again_gives_identical_arrays(dataset: Dataset) -> None:
    datasets.clear_cache()
    again = get_dataset(dataset.info.name)
    assert again is not dataset
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, name), getattr(dataset, name))


def test_shapes_depend_on_the_seed_only() -> None:
    a_x, a_y = shapes_module.generate(64, 3, 32, seed=7)
    b_x, b_y = shapes_module.generate(64, 3, 32, seed=7)
    c_x, _ = shapes_module.generate(64, 3, 32, seed=8)
    np.testing.assert_array_equal(a_x, b_x)
    np.testing.assert_array_equal(a_y, b_y)
    assert not np.array_equal(a_x, c_x)


def test_shapes_are_balanced() -> None:
    data = get_dataset("shapes")
    counts = np.bincount(data.y_train, minlength=len(data.info.classes))
    assert counts.max() - counts.min() <= 1


def test_colour_does_not_give_the_class_away() -> None:
    # Each class's average colour (shape and background together) stays close to the overall average,
    # so a classifier has to look at geometry.
    data = get_dataset("shapes-color")
    per_image = data.x_train.mean(axis=(2, 3)) / 255  # (N, 3)
    overall = per_image.mean(axis=0)
    for label in range(len(data.info.classes)):
        assert np.abs(per_image[data.y_train == label].mean(axis=0) - overall).max() < 0.03
