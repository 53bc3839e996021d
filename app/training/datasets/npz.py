"""Reading the bundled .npz files written by scripts/build_datasets.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Dataset, DatasetInfo

DATA_DIR = Path(__file__).resolve().parent / "data"


def load_npz(info: DatasetInfo, filename: str) -> Dataset:
    """Load `data/<filename>` (x_train, y_train, x_test, y_test) as a Dataset described by `info`."""
    path = DATA_DIR / filename
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rebuild it with `python scripts/build_datasets.py`")
    with np.load(path) as data:
        return Dataset(
            info=info,
            x_train=data["x_train"],  # (N_train, 1, 28, 28) uint8
            # Stored as uint8 to keep the file small; the rest of the code expects int64 labels.
            y_train=data["y_train"].astype(np.int64),
            x_test=data["x_test"],  # (N_test, 1, 28, 28) uint8
            y_test=data["y_test"].astype(np.int64),
        )
