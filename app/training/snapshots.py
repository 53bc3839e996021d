"""Snapshots: what the network looks like at one moment of training.

A snapshot holds, for every conv layer, W, dL/dW of the last batch, the update since the previous snapshot
and the probe image's feature maps; it also keeps a CPU copy of the whole model state so that an uploaded
image can later be run through the model exactly as it was then.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial

import numpy as np
import torch
from torch import nn

from .measures import LayerMeasures, layer_measures
from .models import ConvLayer, SeededDropout

KINDS = ("weight", "grad", "update")  # the per-layer tensors a snapshot holds, as the page names them
# Modules whose forward differs between train and eval mode (our dropout included).
MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm, SeededDropout)


@dataclass(frozen=True)
class Probe:
    """The image whose feature maps every snapshot shows."""

    pixels: np.ndarray  # (C, H, W) uint8, as a person sees it
    tensor: torch.Tensor  # (1, C, H, W) float32, normalised, on the model's device
    index: int | None  # test-set index, None for an uploaded image
    label: int | None  # true class if known
    source: str  # "test" or "upload"


@dataclass(frozen=True)
class LayerSnapshot:
    """One conv layer at one moment."""

    name: str
    weight: np.ndarray  # (O, I, kh, kw) float32
    grad: np.ndarray  # (O, I, kh, kw) float32: dL/dW of the last batch
    update: np.ndarray  # (O, I, kh, kw) float32: W now - W at the previous snapshot
    fmap: np.ndarray  # (O, H, W) float32: post-activation output for the probe
    preact: np.ndarray  # (O, H, W) float32: the conv's output for the probe, before the activation
    start: np.ndarray  # (O, I, kh, kw) float32: W at step 0 (shared, never written)
    peaks: dict[str, float]  # largest |value| of weight, grad, update over the run so far, this moment included
    relu: bool = True  # the activation is a ReLU: fmap is exactly max(0, preact)
    pool: dict[str, object] | None = None  # the pooling that follows the activation (ConvLayer.pool_info)

    @cached_property
    def measures(self) -> LayerMeasures:
        """W compared with W at step 0 (computed when first asked: by the encoder, off the training thread)."""
        return layer_measures(self.weight, self.start)


@dataclass(frozen=True)
class Snapshot:
    """The whole network at one moment of training."""

    seq: int  # 0, 1, 2, ... per run
    step: int  # optimizer steps done
    epoch: int  # completed epochs
    samples_seen: int
    loss: float  # mean training loss since the previous snapshot (nan if none)
    lr: float
    elapsed: float  # seconds of training (pauses excluded)
    instrument_seconds: float  # of `elapsed`, seconds spent on filterscope's own work before this snapshot
    epoch_end: bool
    layers: tuple[LayerSnapshot, ...]
    probe: Probe
    probs: np.ndarray  # (classes,) float32 softmax for the probe
    state: dict[str, torch.Tensor]  # CPU copy of model.state_dict()


def probe_forward(model: nn.Module, layers: list[ConvLayer], x: torch.Tensor,
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Run `x` (1, C, H, W) in eval mode; return each conv layer's feature maps (C, H, W) after and before
    its activation, and the softmax."""
    maps: dict[str, np.ndarray] = {}
    preacts: dict[str, np.ndarray] = {}
    hooks = []
    for layer in layers:
        def hook(_m: nn.Module, _i: object, out: torch.Tensor, into: dict[str, np.ndarray] = maps,
                 name: str = layer.name) -> None:
            into[name] = out[0].detach().float().cpu().numpy()
        hooks.append(layer.activation.register_forward_hook(hook))
        if layer.activation is not layer.conv:
            hooks.append(layer.conv.register_forward_hook(partial(hook, into=preacts)))
    # Switching modes walks every module twice; skip it when no module acts differently in eval mode.
    toggle = model.training and any(isinstance(m, MODE_DEPENDENT) for m in model.modules())
    try:
        if toggle:
            model.eval()
        with torch.no_grad():
            logits = model(x)
        probs = torch.softmax(logits[0].float(), dim=0).cpu().numpy()
    finally:
        if toggle:
            model.train()
        for h in hooks:
            h.remove()
    for name, fmap in maps.items():
        preacts.setdefault(name, fmap)  # no activation: the conv's output is the feature map
    return maps, preacts, probs


class Reference:
    """What every snapshot of a run is compared with: each layer's W at step 0, and the largest |value| of W,
    dW and ΔW seen so far (so that colours can keep one scale over time). Used by the training thread only."""

    def __init__(self) -> None:
        self.start: dict[str, np.ndarray] = {}
        self.peaks: dict[str, dict[str, float]] = {}

    def observe(self, name: str, tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, float]]:
        """Take in one layer's `tensors` (weight, grad, update); return its weights at the start and the peaks."""
        start = self.start.setdefault(name, tensors["weight"].copy())
        peaks = self.peaks.setdefault(name, dict.fromkeys(KINDS, 0.0))
        for kind in KINDS:
            a = tensors[kind]
            if a.size:
                peak = float(np.abs(a).max())
                if np.isfinite(peak) and peak > peaks[kind]:
                    peaks[kind] = peak
        return start, dict(peaks)


def conv_weights(layers: list[ConvLayer]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of every conv layer's weight."""
    return {layer.name: layer.conv.weight.detach().to("cpu", copy=True) for layer in layers}


def capture(model: nn.Module, layers: list[ConvLayer], previous: dict[str, torch.Tensor], probe: Probe,
            reference: Reference, *, seq: int, step: int, epoch: int, samples_seen: int, loss: float, lr: float,
            elapsed: float, instrument_seconds: float, epoch_end: bool) -> Snapshot:
    """Take a snapshot of `model` now; `previous` holds the conv weights at the previous snapshot."""
    maps, preacts, probs = probe_forward(model, layers, probe.tensor)
    shots = []
    for layer in layers:
        w = layer.conv.weight.detach().cpu()  # (O, I, kh, kw)
        g = layer.conv.weight.grad
        tensors = {
            "weight": w.numpy().copy(),
            "grad": g.detach().cpu().numpy().copy() if g is not None else np.zeros(w.shape, np.float32),
            "update": (w - previous[layer.name]).numpy() if layer.name in previous
            else np.zeros(w.shape, np.float32),
        }
        start, peaks = reference.observe(layer.name, tensors)
        shots.append(LayerSnapshot(name=layer.name, **tensors, fmap=maps[layer.name], preact=preacts[layer.name],
                                   start=start, peaks=peaks, relu=layer.relu, pool=layer.pool_info()))
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return Snapshot(seq=seq, step=step, epoch=epoch, samples_seen=samples_seen, loss=loss, lr=lr,
                    elapsed=elapsed, instrument_seconds=instrument_seconds, epoch_end=epoch_end,
                    layers=tuple(shots), probe=probe, probs=probs, state=state)
