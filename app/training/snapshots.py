"""Snapshots: what the network looks like at one moment of training.

A snapshot holds, for every conv layer, W, dL/dW of the last batch, the update since the previous snapshot
and the probe image's feature maps; it also keeps a CPU copy of the whole model state so that an uploaded
image can later be run through the model exactly as it was then.

The training thread only copies (W, dW, the state): the probe's feature maps are computed from the copied
state when first asked, by whoever encodes the snapshot (the store's writer thread), on a copy of the model
(`ProbeModel`). That was 0.75-1 ms of every snapshot's 1.5-2.5 on the training thread.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial

import numpy as np
import torch
from torch import nn

from .checkpoints import from_arrays
from .measures import LayerMeasures, layer_measures
from .models import ConvLayer, SeededDropout
from .threads import serial_torch

log = logging.getLogger(__name__)

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


# Per conv layer, the probe's feature maps (O, H, W) after and before the activation; and the softmax.
Maps = tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]


class ProbeMaps:
    """The probe's feature maps and prediction at one moment: given, or computed once when first asked (from
    any thread; a pickled one carries them made)."""

    def __init__(self, compute: Callable[[], Maps]) -> None:
        self._compute: Callable[[], Maps] | None = compute
        self._value: Maps | None = None
        self._lock = threading.Lock()

    @classmethod
    def given(cls, maps: dict[str, np.ndarray], preacts: dict[str, np.ndarray], probs: np.ndarray) -> ProbeMaps:
        made = cls(lambda: (maps, preacts, probs))
        made.get()
        return made

    def get(self) -> Maps:
        with self._lock:
            if self._value is None:
                assert self._compute is not None
                self._value = self._compute()
                self._compute = None  # drops the model state it was computed from
            return self._value

    def __getstate__(self) -> dict[str, object]:
        return {"value": self.get()}

    def __setstate__(self, state: dict[str, object]) -> None:
        self._value = state["value"]  # type: ignore[assignment]
        self._compute = None
        self._lock = threading.Lock()


@dataclass(frozen=True)
class LayerSnapshot:
    """One conv layer at one moment."""

    name: str
    weight: np.ndarray  # (O, I, kh, kw) float32
    grad: np.ndarray  # (O, I, kh, kw) float32: dL/dW of the last batch
    update: np.ndarray  # (O, I, kh, kw) float32: W now - W at the previous snapshot
    maps: ProbeMaps  # the probe's feature maps of every layer (fmap and preact below are this layer's)
    start: np.ndarray  # (O, I, kh, kw) float32: W at step 0 (shared, never written)
    peaks: dict[str, float]  # largest |value| of weight, grad, update over the run so far, this moment included
    relu: bool = True  # the activation is a ReLU: fmap is exactly max(0, preact)
    pool: dict[str, object] | None = None  # the pooling that follows the activation (ConvLayer.pool_info)

    @property
    def fmap(self) -> np.ndarray:
        """(O, H, W) float32: the layer's output for the probe, after the activation."""
        return self.maps.get()[0][self.name]

    @property
    def preact(self) -> np.ndarray:
        """(O, H, W) float32: the conv's output for the probe, before the activation."""
        return self.maps.get()[1][self.name]

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
    maps: ProbeMaps  # the probe's feature maps and prediction
    model: dict[str, np.ndarray]  # a copy of model.state_dict() as arrays (never written)

    @cached_property
    def state(self) -> dict[str, torch.Tensor]:
        """The model's state as torch tensors (sharing `model`'s memory), as load_state_dict takes it."""
        return from_arrays(self.model)

    @property
    def probs(self) -> np.ndarray:
        """(classes,) float32: the softmax for the probe."""
        return self.maps.get()[2]


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


class ProbeModel:
    """A copy of a run's model on the CPU that runs the probe through any snapshot's state, on whichever thread
    asks (serially: a second OpenMP pool would slow training, threads.py). One per run; one probe at a time."""

    def __init__(self, model: nn.Module, layers: list[ConvLayer]) -> None:
        self._model, self._layers = copy.deepcopy((model, layers))  # the layers name the copy's modules
        self._model.to("cpu")
        self._lock = threading.Lock()

    @classmethod
    def of(cls, model: nn.Module, layers: list[ConvLayer]) -> ProbeModel | None:
        """The copy, or None for a model that cannot be copied (its snapshots then run the probe at once)."""
        try:
            return cls(model, layers)
        except Exception as exc:  # a module holding something deepcopy refuses (a lock, a file)
            log.info("the model cannot be copied (%s): the probe runs on the training thread", exc)
            return None

    def maps(self, state: dict[str, np.ndarray], x: torch.Tensor, training: bool) -> Maps:
        """Run `x` through the model as `state` holds it (in eval mode wherever `training` asks probe_forward
        to switch)."""
        with self._lock:
            serial_torch()
            self._model.load_state_dict(from_arrays(state))
            self._model.train(training)
            return probe_forward(self._model, self._layers, x.to("cpu"))


class Reference:
    """What every snapshot of a run is compared with: each layer's W at step 0, and the largest |value| of W,
    dW and ΔW seen so far (so that colours can keep one scale over time). Used by the training thread only."""

    def __init__(self) -> None:
        self.start: dict[str, np.ndarray] = {}
        self.peaks: dict[str, dict[str, float]] = {}

    def observe(self, name: str, tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, float]]:
        """Take in one layer's `tensors` (weight, grad, update); return its weights at the start and the peaks."""
        start = self.start.get(name)
        if start is None:
            start = self.start[name] = tensors["weight"].copy()
        peaks = self.peaks.setdefault(name, dict.fromkeys(KINDS, 0.0))
        for kind in KINDS:
            a = tensors[kind]
            if a.size:
                peak = max(float(a.max()), -float(a.min()))  # |a|'s largest, without making |a|
                if np.isfinite(peak) and peak > peaks[kind]:
                    peaks[kind] = peak
        return start, dict(peaks)


def conv_weights(layers: list[ConvLayer]) -> dict[str, np.ndarray]:
    """A CPU copy of every conv layer's weight."""
    return {layer.name: layer.conv.weight.detach().to("cpu", copy=True).numpy() for layer in layers}


class StateCopy:
    """Copies a model's state and its conv layers' gradients for a snapshot, in one NumPy copy where all of them
    are CPU float32 (the built-in models): right after a batch, in the training thread, a copy per tensor cost
    ~70 us each (~0.6 ms a snapshot for `tiny`), and `model.state_dict()` itself ~0.2 ms. The tensors are read
    through NumPy views kept from the start, checked to be the parameters' memory still; elsewhere (another
    device or dtype) every tensor is copied on its own."""

    def __init__(self, model: nn.Module, layers: list[ConvLayer]) -> None:
        self._model, self._layers = model, layers
        self._views: list[np.ndarray] | None = None
        self._watch()

    def _watch(self) -> None:
        live = self._model.state_dict(keep_vars=True)  # the parameters themselves: .data may be replaced
        tensors = [t.detach() for t in live.values()]
        self._keys = list(live)
        self._live = list(live.values())
        self._ptrs = [t.data_ptr() for t in self._live]
        names = {id(t): key for key, t in live.items()}
        self._weights = [names.get(id(layer.conv.weight)) for layer in self._layers]
        plain = all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors)
        self._views = [t.numpy().reshape(-1) for t in tensors] if plain and None not in self._weights else None
        self._shapes = [tuple(t.shape) for t in tensors]

    def copy(self) -> tuple[dict[str, np.ndarray], list[np.ndarray], list[np.ndarray | None]]:
        """(the state as arrays, each conv layer's W in it, each conv layer's dW or None where it has none)."""
        if self._views is not None and any(t.data_ptr() != ptr for t, ptr in zip(self._live, self._ptrs,
                                                                                   strict=True)):
            self._watch()  # a parameter got new memory
        grads = [layer.conv.weight.grad for layer in self._layers]
        if self._views is None:
            copied = {key: value.detach().to("cpu", copy=True).numpy()
                      for key, value in self._model.state_dict().items()}
            weights = [copied[key] if key is not None else layer.conv.weight.detach().to("cpu", copy=True).numpy()
                       for key, layer in zip(self._weights, self._layers, strict=True)]
            return copied, weights, [g.detach().to("cpu", copy=True).numpy() if g is not None else None
                                     for g in grads]
        plain = [g is not None and g.device.type == "cpu" and g.dtype == torch.float32 and g.is_contiguous()
                 for g in grads]
        parts = self._views + [g.numpy().reshape(-1) for g, ok in zip(grads, plain, strict=True)
                               if ok and g is not None]
        flat = np.concatenate(parts)  # the one copy
        state: dict[str, np.ndarray] = {}
        at = 0
        for key, shape, view in zip(self._keys, self._shapes, self._views, strict=True):
            state[key] = flat[at:at + view.size].reshape(shape)
            at += view.size
        out: list[np.ndarray | None] = []
        for g, ok in zip(grads, plain, strict=True):
            if g is None:
                out.append(None)
            elif ok:
                out.append(flat[at:at + g.numel()].reshape(tuple(g.shape)))
                at += g.numel()
            else:
                out.append(g.detach().to("cpu", copy=True).numpy())
        return state, [state[key] for key in self._weights if key is not None], out


def capture(model: nn.Module, layers: list[ConvLayer], previous: dict[str, np.ndarray], probe: Probe,
            reference: Reference, *, seq: int, step: int, epoch: int, samples_seen: int, loss: float, lr: float,
            elapsed: float, instrument_seconds: float, epoch_end: bool, on: ProbeModel | None = None,
            copier: StateCopy | None = None) -> Snapshot:
    """Take a snapshot of `model` now; `previous` holds the conv weights at the previous snapshot. The probe's
    maps are computed later `on` that copy of the model (now, here, without one). `copier`: the run's
    StateCopy (one is made for this snapshot without)."""
    state, weights, grads = (copier or StateCopy(model, layers)).copy()
    if on is None:
        maps = ProbeMaps.given(*probe_forward(model, layers, probe.tensor))
    else:
        maps = ProbeMaps(partial(on.maps, state, probe.tensor, model.training))
    shots = []
    for layer, w, g in zip(layers, weights, grads, strict=True):
        before = previous.get(layer.name)
        tensors = {
            "weight": w,  # (O, I, kh, kw), never written
            "grad": g if g is not None else np.zeros(w.shape, np.float32),
            "update": w - before if before is not None else np.zeros(w.shape, np.float32),
        }
        start, peaks = reference.observe(layer.name, tensors)
        shots.append(LayerSnapshot(name=layer.name, **tensors, maps=maps, start=start, peaks=peaks,
                                   relu=layer.relu, pool=layer.pool_info()))
    return Snapshot(seq=seq, step=step, epoch=epoch, samples_seen=samples_seen, loss=loss, lr=lr,
                    elapsed=elapsed, instrument_seconds=instrument_seconds, epoch_end=epoch_end,
                    layers=tuple(shots), probe=probe, maps=maps, model=state)
