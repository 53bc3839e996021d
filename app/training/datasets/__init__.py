"""The data sets a run can train on, by name.

Adding one is one module that builds a `DatasetInfo` and decorates its loader with `@register(info)`, plus an
import below. Loads are cached per process: every run on the same data set shares one copy of its arrays.
"""

from __future__ import annotations

from .base import Dataset, DatasetInfo, Kind
from .registry import clear_cache, get_dataset, get_info, list_datasets, names, register

# Imported for their side effect: each module registers its data sets. The import order is the order the
# page lists them in, hence isort is off here.
# isort: off
from . import mnist  # noqa: F401
from . import fashion_mnist  # noqa: F401
from . import shapes  # noqa: F401
# isort: on

DATASET_NAMES: tuple[str, ...] = names()

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "DatasetInfo",
    "Kind",
    "clear_cache",
    "get_dataset",
    "get_info",
    "list_datasets",
    "register",
]
