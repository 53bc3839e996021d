"""Run an image through the model as it was at a snapshot, never touching the model being trained."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from .config import TrainConfig
from .datasets import DatasetInfo
from .models import ConvLayer, build_model, conv_layers
from .snapshots import probe_forward
from .threads import serial_torch


class Inspector:
    """Models rebuilt from snapshots' states (a few kept, newest used first), each guarded by its own lock."""

    def __init__(self, config: TrainConfig, info: DatasetInfo, capacity: int = 4) -> None:
        self._config = config
        self._info = info
        self._capacity = capacity
        self._models: OrderedDict[int, tuple[nn.Module, list[ConvLayer], threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()

    def has(self, seq: int) -> bool:
        """Whether the model of snapshot `seq` is built already."""
        with self._lock:
            return seq in self._models

    def _model(self, seq: int, state: dict[str, torch.Tensor] | None) -> tuple[nn.Module, list[ConvLayer],
                                                                             threading.Lock]:
        with self._lock:
            if seq in self._models:
                self._models.move_to_end(seq)
                return self._models[seq]
        if state is None:
            raise KeyError(seq)
        info = self._info
        model = build_model(self._config.model, info.channels, info.size, len(info.classes), self._config.dropout)
        model.load_state_dict(state)
        model.eval()
        entry = (model, conv_layers(model), threading.Lock())
        with self._lock:
            self._models[seq] = entry
            while len(self._models) > self._capacity:
                self._models.popitem(last=False)
        return entry

    def clear(self) -> None:
        """Forget the rebuilt models."""
        with self._lock:
            self._models.clear()

    def run(self, seq: int, state: dict[str, torch.Tensor] | None, x: np.ndarray,
            ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Feature maps per conv layer, (C, H, W) each, and class probabilities for one normalised (C, H, W)
        image, through the model of snapshot `seq` (built from `state` unless it is built already)."""
        serial_torch()  # a worker thread: one image needs no thread pool, and a second pool slows training
        model, layers, lock = self._model(seq, state)
        batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(0)  # (1, C, H, W)
        with lock:  # forward hooks are per model: one image at a time through each
            maps, _, probs = probe_forward(model, layers, batch)
            return maps, probs
