"""Data sets as tensors on the training device, and the one augmentation the engine offers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import Dataset, DatasetInfo


@dataclass(frozen=True)
class Tensors:
    """A data set ready for training: normalised float images and int64 labels on one device."""

    x_train: torch.Tensor  # (N, C, H, W) float32
    y_train: torch.Tensor  # (N,) int64
    x_test: torch.Tensor  # (M, C, H, W) float32
    y_test: torch.Tensor  # (M,) int64


def normalise(pixels: np.ndarray, info: DatasetInfo) -> torch.Tensor:
    """uint8 images (..., C, H, W) to float32 (x / 255 - mean) / std."""
    mean = torch.tensor(info.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32).view(-1, 1, 1)
    array = np.ascontiguousarray(pixels)
    if not array.flags.writeable:  # e.g. a decoded upload: torch only wraps writable memory
        array = array.copy()
    return (torch.from_numpy(array).float() / 255 - mean) / std


def to_tensors(dataset: Dataset, device: torch.device) -> Tensors:
    """Normalise the whole data set once and move it to `device` (8,000 28x28 images are 25 MB)."""
    return Tensors(
        x_train=normalise(dataset.x_train, dataset.info).to(device),
        y_train=torch.from_numpy(dataset.y_train.astype(np.int64)).to(device),
        x_test=normalise(dataset.x_test, dataset.info).to(device),
        y_test=torch.from_numpy(dataset.y_test.astype(np.int64)).to(device),
    )


def balanced_subset(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of `count` images taken from each class in turn, in data-set order: the same for every seed.

    A small training subset drawn this way has every class (an overfitting run learns them all), and the
    train-accuracy sample of every epoch is one fixed set of images.
    """
    labels = np.asarray(labels)
    rank = np.zeros(labels.shape[0], np.int64)  # position of each image among those of its class
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(where.shape[0])
    order = np.lexsort((np.arange(labels.shape[0]), rank))  # by rank, then by index
    return np.sort(order[:count])


def augment_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Shift each image of a batch (B, C, H, W) by its own random (dy, dx) in [-max_shift, max_shift].

    Only shifts: flips would turn one class of oriented bar into another.
    """
    b, c, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (2, b), generator=generator).to(x.device)
    # Replicated edges continue the background, whatever its colour.
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")  # (B, C, H+2m, W+2m)
    rows = torch.arange(h, device=x.device) + max_shift - shifts[0][:, None]  # (B, H)
    cols = torch.arange(w, device=x.device) + max_shift - shifts[1][:, None]  # (B, W)
    n = torch.arange(b, device=x.device)[:, None, None, None]
    ch = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[n, ch, rows[:, None, :, None], cols[:, None, None, :]]
