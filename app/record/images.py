"""The images a watched run's filters were analysed on, kept beside the run log (a person's own test images:
the server has no data set to cut the top patches from). One .npy file per run, uint8 (N, C, H, W) as a person
sees them, written once, atomically, by the producer; removed with the run.

Bounded: at most MAX_BYTES of pixels (and the watcher's ANALYSIS_IMAGES images), so 2,000 of a 3x32x32 data
set (6 MB) fit whole and a 224 px data set keeps its first ~200.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

IMAGES = "images"
MAX_BYTES = 32 * 1024 * 1024


def images_path(data_dir: Path, run_id: str) -> Path:
    return data_dir / IMAGES / f"{run_id}.npy"


def save_images(data_dir: Path, run_id: str, pixels: np.ndarray) -> None:
    """Keep `pixels` (N, C, H, W) uint8 as run `run_id`'s images (written to a temporary file, then renamed)."""
    path = images_path(data_dir, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    with open(scratch, "wb") as f:
        np.save(f, np.ascontiguousarray(pixels, np.uint8))
        f.flush()
        os.fsync(f.fileno())
    os.replace(scratch, path)


def load_images(data_dir: Path, run_id: str) -> np.ndarray | None:
    """Run `run_id`'s images, or None if it has none."""
    try:
        pixels: np.ndarray = np.load(images_path(data_dir, run_id), mmap_mode="r", allow_pickle=False)
        return pixels
    except (OSError, ValueError):
        return None


def images_bytes(data_dir: Path, run_id: str | None = None) -> int:
    """Bytes run `run_id`'s images take on disk (every run's when None): the disk budget counts them."""
    paths = [images_path(data_dir, run_id)] if run_id is not None else list((data_dir / IMAGES).glob("*.npy"))
    total = 0
    for path in paths:
        try:
            total += path.stat().st_size
        except OSError:
            pass
    return total


def remove_images(data_dir: Path, run_id: str) -> None:
    images_path(data_dir, run_id).unlink(missing_ok=True)
