"""The probe: the image whose feature maps every snapshot shows, as a person sees it and as the model does."""

from __future__ import annotations

import numpy as np
import torch

from .data import normalise
from .datasets import DatasetInfo, get_dataset
from .snapshots import Probe


def make_probe(pixels: np.ndarray, info: DatasetInfo, device: torch.device, index: int | None, label: int | None,
               source: str) -> Probe:
    """A probe from (C, H, W) uint8 pixels prepared for data set `info`."""
    x = normalise(pixels, info)  # (C, H, W)
    return Probe(pixels=pixels, tensor=x.unsqueeze(0).to(device), index=index, label=label, source=source)


def test_probe(dataset: str, index: int, device: torch.device) -> Probe:
    """Test image `index` of `dataset` as the probe, with its label."""
    data = get_dataset(dataset)
    return make_probe(data.x_test[index], data.info, device, index, int(data.y_test[index]), "test")
