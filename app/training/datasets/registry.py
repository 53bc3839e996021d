"""The data set registry: each data set module registers its info and loader; loads are cached per process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from .base import Dataset, DatasetInfo

logger = logging.getLogger(__name__)

Loader = Callable[[], Dataset]

_infos: dict[str, DatasetInfo] = {}  # in registration order, which is the order the page lists them in
_loaders: dict[str, Loader] = {}
_cache: dict[str, Dataset] = {}
# One lock for all loads: each takes well under a second, and two runs asking for the same set at once
# must share one copy rather than both read it.
_lock = threading.Lock()


def register(info: DatasetInfo) -> Callable[[Loader], Loader]:
    """Decorator that makes the decorated function the loader of data set `info.name`."""

    def decorate(loader: Loader) -> Loader:
        if info.name in _infos:
            raise ValueError(f"data set {info.name!r} is registered twice")
        _infos[info.name] = info
        _loaders[info.name] = loader
        return loader

    return decorate


def unregister(name: str) -> None:
    """Forget data set `name` and its loaded copy (a person's folder that is gone, and tests); KeyError if unknown."""
    get_info(name)
    with _lock:
        del _infos[name], _loaders[name]
        _cache.pop(name, None)


def names() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_infos)


def list_datasets() -> list[DatasetInfo]:
    """The info of every registered data set, without loading any images."""
    return list(_infos.values())


def get_info(name: str) -> DatasetInfo:
    """The info of data set `name`, without loading its images; KeyError if unknown."""
    try:
        return _infos[name]
    except KeyError:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(_infos)}") from None


def get_dataset(name: str) -> Dataset:
    """Data set `name`, loaded once per process and shared; treat its arrays as read-only. KeyError if unknown."""
    info = get_info(name)
    with _lock:
        dataset = _cache.get(name)
        if dataset is None:
            start = time.perf_counter()
            dataset = _loaders[name]()
            _check(info, dataset)
            _cache[name] = dataset
            logger.info("loaded data set %s in %.3f s", name, time.perf_counter() - start)
    return dataset


def clear_cache() -> None:
    """Forget every loaded data set (tests and benchmarks; the next get_dataset loads afresh)."""
    with _lock:
        _cache.clear()


def _check(info: DatasetInfo, dataset: Dataset) -> None:
    """Fail at load time, not mid-run, if a loader's arrays disagree with its info."""
    if dataset.info != info:
        raise ValueError(f"{info.name}: the loader returned the info of {dataset.info.name!r}")
    for split, x, y, count in (
        ("train", dataset.x_train, dataset.y_train, info.train_count),
        ("test", dataset.x_test, dataset.y_test, info.test_count),
    ):
        expected = (count, info.channels, info.size, info.size)  # (N, C, H, W)
        if x.shape != expected or x.dtype != np.uint8:
            raise ValueError(f"{info.name} {split}: images are {x.dtype}{x.shape}, expected uint8{expected}")
        if y.shape != (count,) or y.dtype != np.int64:
            raise ValueError(f"{info.name} {split}: labels are {y.dtype}{y.shape}, expected int64({count},)")
        if y.min() < 0 or y.max() >= len(info.classes):
            raise ValueError(f"{info.name} {split}: labels outside 0..{len(info.classes) - 1}")
