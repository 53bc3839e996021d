"""Normalisation and augmentation."""

from __future__ import annotations

import numpy as np
import torch

from filterscope.training.data import augment_shift, normalise
from filterscope.training.datasets import get_info


def test_normalise_uses_the_dataset_statistics() -> None:
    info = get_info("mnist")
    x = normalise(np.full((1, 28, 28), 255, np.uint8), info)
    assert x.shape == (1, 28, 28)
    assert torch.allclose(x, torch.full_like(x, (1 - info.mean[0]) / info.std[0]))


def test_augment_shift_moves_content_without_changing_it() -> None:
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0  # a square well inside the image
    out = augment_shift(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.equal(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))  # nothing pushed off the edge
    moved = (out != x).flatten(1).any(dim=1)
    assert moved.float().mean() > 0.5  # most images moved
    ys, xs = torch.nonzero(out[0, 0], as_tuple=True)
    assert 8 <= int(ys.min()) <= 12 and 8 <= int(xs.min()) <= 12  # by at most 2 px


def test_augment_shift_is_seeded() -> None:
    x = torch.rand(8, 3, 32, 32)
    a = augment_shift(x, torch.Generator().manual_seed(5))
    b = augment_shift(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
