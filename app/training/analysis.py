"""What each filter has learned to detect: its top test-set patches, and the health of every conv layer.

Zeiler and Fergus read a filter by the image patches that excite it most; tools that show this (the Deep
Visualization Toolbox, OpenAI Microscope) compute it offline for a finished model. Here it is computed at
step 0 and at the end of every epoch, while the network learns, for almost nothing: the epoch end already
runs the whole test set through the model (`TrainLoop.evaluate`), and forward hooks on every conv layer's
activation keep, per filter, a running top-k of the per-image spatial maximum during that same pass. Each
image contributes only its maximum, so the k images are distinct; where the maximum sits, mapped through
the layers' receptive field, gives the patch. Step 0 has no evaluation of its own, so it pays one pass.

The receptive field is derived from the graph that runs (fields.py: kernel sizes, strides, padding, dilation
of every conv and pooling on the way from the image), so a new preset needs no code here. Health comes with it: a filter
is dead when it responds positively nowhere on the test set, a near-duplicate when its weights have cosine
similarity above DUPLICATE_COSINE with another filter of its layer.

Everything here runs on the training thread, during the pass or right after it, and costs a few ms per
epoch; what is left (JSON) is made by the store's writer thread from the plain arrays of `AnalysisEvent`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .fields import Field, graph_fields
from .models import ConvLayer, conv_layers

log = logging.getLogger(__name__)

TOP = 9  # patches per filter: a 3x3 mosaic is readable at a glance and still shows what they share
DUPLICATE_COSINE = 0.95  # two filters this alike are one detector twice over (weights, flattened)
# The share of a filter's responses above zero is counted on every 4th test image (500 of mnist's 2,000):
# counting writes a copy of the activations, the one costly step of the hooks (for `classic` it was 300 of
# the 360 ms an epoch's hooks took; maxima only read), and 500 images x every position pin a share to 0.1 %.
POSITIVE_EVERY = 4


def duplicates(weight: np.ndarray, threshold: float = DUPLICATE_COSINE) -> tuple[np.ndarray, np.ndarray]:
    """For each filter of `weight` (O, ...): its most similar other filter and their cosine similarity;
    the partner is -1 where no other filter reaches `threshold`. All-zero filters are alike to none, and
    non-finite entries (a diverging run's) count as zero."""
    flat = np.nan_to_num(weight.reshape(weight.shape[0], -1).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    norms = np.linalg.norm(flat, axis=1)
    unit = flat / np.where(norms > 0, norms, 1)[:, None]
    cos = unit @ unit.T  # (O, O)
    np.fill_diagonal(cos, -np.inf)
    if cos.shape[0] < 2:
        return np.full(cos.shape[0], -1, np.int32), np.zeros(cos.shape[0], np.float32)
    partner = cos.argmax(axis=1)
    best = cos[np.arange(cos.shape[0]), partner]
    return np.where(best > threshold, partner, -1).astype(np.int32), best.astype(np.float32)


@dataclass(frozen=True)
class LayerAnalysis:
    """One conv layer's top patches and health at one moment (plain arrays: safe to hand to another thread)."""

    name: str
    field: Field
    activation: np.ndarray  # (O, TOP) float32, each filter's highest per-image maxima, best first
    image: np.ndarray  # (O, TOP) int64, test-set index of each
    box: np.ndarray  # (O, TOP, 4) int32, (y0, x0, y1, x1) of the maximum's receptive field, ends exclusive
    positive: np.ndarray  # (O,) float32, share of (image, position) responses above zero (every 4th image)
    peak: np.ndarray  # (O,) float32, the filter's largest response anywhere on the test set
    duplicate_of: np.ndarray  # (O,) int32, the most similar other filter above DUPLICATE_COSINE, else -1
    similarity: np.ndarray  # (O,) float32, cosine similarity to the most similar other filter

    @property
    def dead(self) -> np.ndarray:
        """(O,) bool: no positive response anywhere on the test set."""
        return np.asarray(self.peak <= 0)

    def filters(self) -> list[dict[str, object]]:
        """Each filter as the API answers it; patches with no positive response are left out (they are ties),
        and so are non-finite ones (a diverging run's: JSON has no NaN)."""
        out: list[dict[str, object]] = []
        for f in range(self.activation.shape[0]):
            keep = np.isfinite(self.activation[f]) & (self.activation[f] > 0)
            patches = [{"index": int(i), "box": [int(v) for v in b], "activation": round(float(a), 5)}
                       for i, b, a in zip(self.image[f][keep], self.box[f][keep], self.activation[f][keep],
                                          strict=True)]
            partner = int(self.duplicate_of[f])
            out.append({"filter": f, "dead": bool(self.peak[f] <= 0), "positive": round(float(self.positive[f]), 5),
                        "duplicate_of": partner if partner >= 0 else None,
                        "similarity": round(float(self.similarity[f]), 4), "patches": patches})
        return out

    def body(self) -> dict[str, object]:
        """The layer as stored and answered (see schemas.TopLayerOut)."""
        return {"layer": self.name, "receptive_field": self.field.size, "dead": int(self.dead.sum()),
                "duplicates": int((self.duplicate_of >= 0).sum()), "filters": self.filters()}


@dataclass(frozen=True)
class AnalysisEvent:
    """The analysis of snapshot `seq`, made during a test pass with the snapshot's weights."""

    seq: int
    step: int
    epoch: int
    seconds: float  # training-thread time it cost
    layers: tuple[LayerAnalysis, ...]

    def body(self) -> dict[str, object]:
        return {"seq": self.seq, "step": self.step, "epoch": self.epoch, "seconds": round(self.seconds, 5),
                "layers": [layer.body() for layer in self.layers]}


class Collector:
    """Forward hooks that keep, per conv layer and filter, the TOP highest per-image maxima of one pass."""

    def __init__(self, layers: list[ConvLayer], top: int = TOP) -> None:
        self._layers = layers
        self._top = top
        self._first = 0  # test-set index of the current batch's first image
        self.seconds = 0.0  # time spent in the hooks
        self.best: dict[str, torch.Tensor] = {}  # (O, k) maxima, best first
        self.image: dict[str, torch.Tensor] = {}  # (O, k) image indices
        self.where: dict[str, torch.Tensor] = {}  # (O, k) flat position of each maximum
        self.positive: dict[str, torch.Tensor] = {}  # (O,) count of responses above zero
        self.peak: dict[str, torch.Tensor] = {}  # (O,) largest response
        self.shape: dict[str, tuple[int, int]] = {}  # (H, W) of the layer's output
        self.count = 0  # images seen
        self.failed = False  # a hook raised: this pass gives no analysis (training goes on)
        self.sampled = 0  # images whose responses are counted for the positive share

    def batch(self, first: int) -> None:
        """The next forward pass's first image is test image `first` (TrainLoop.evaluate calls this)."""
        self._first = first

    @contextmanager
    def hooked(self) -> Iterator[Callable[[int], None]]:
        """Hooks on every layer's activation for the block; yields `batch`, for `TrainLoop.evaluate`."""
        handles = [layer.activation.register_forward_hook(self._hook(layer.name)) for layer in self._layers]
        try:
            yield self.batch
        finally:
            for h in handles:
                h.remove()

    def _hook(self, name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            if self.failed:
                return
            started = time.perf_counter()
            try:
                self._collect(name, out)
            except Exception:  # the analysis must never end the test pass, nor the run
                log.exception("filter analysis of layer %s failed; this moment gets none", name)
                self.failed = True
            self.seconds += time.perf_counter() - started
        return hook

    def _collect(self, name: str, out: torch.Tensor) -> None:
        """Merge one batch's activations `out` (B, O, H, W) of layer `name` into the running top-k."""
        flat = out.detach().flatten(2)  # (B, O, H*W)
        b, o = flat.shape[0], flat.shape[1]
        maxima = flat.amax(dim=2)  # (B, O): each image's strongest response per filter
        sample = flat[::POSITIVE_EVERY]  # images first, first+4, ... (batches are multiples of 4)
        positive = (sample > 0).sum(dim=2, dtype=torch.int32).sum(dim=0).long()  # (O,)
        images = torch.arange(self._first, self._first + b, device=flat.device).expand(o, b)  # (O, B)
        held = self.best[name].shape[1] if name in self.best else 0
        if held:  # merge this batch into the running top-k: (O, k + B) -> (O, k)
            values = torch.cat([self.best[name], maxima.T], dim=1)
            images = torch.cat([self.image[name], images], dim=1)
            self.positive[name] += positive
            self.peak[name] = torch.maximum(self.peak[name], maxima.amax(dim=0))
        else:
            values = maxima.T
            self.positive[name] = positive
            self.peak[name] = maxima.amax(dim=0)
            self.shape[name] = (int(out.shape[2]), int(out.shape[3]))
        top, order = values.topk(min(self._top, values.shape[1]), dim=1)  # (O, k), best first
        # Where the maximum sits, only for the few images that made the top: argmax over (O, k) rows.
        fresh = order >= held
        rows = flat[(order - held).clamp(min=0), torch.arange(o, device=flat.device)[:, None]]  # (O, k, H*W)
        where = rows.argmax(dim=2)
        if held:
            where = torch.where(fresh, where, self.where[name].gather(1, order.clamp(max=held - 1)))
        self.best[name], self.image[name], self.where[name] = top, images.gather(1, order), where
        if name == self._layers[0].name:
            self.count += b
            self.sampled += sample.shape[0]

    def finish(self, model: nn.Module, fields: dict[str, Field], size: int | tuple[int, int],
               ) -> tuple[LayerAnalysis, ...]:
        """The layers' analyses as plain arrays; weights for the duplicate test come from `model` now."""
        started = time.perf_counter()
        weights = {layer.name: layer.conv.weight.detach().float().cpu().numpy() for layer in self._layers}
        out = []
        for layer in self._layers:
            name, field = layer.name, fields[layer.name]
            h, w = self.shape[name]
            where = self.where[name].cpu().numpy()  # (O, k)
            box = field.boxes(where // w, where % w, size)  # (O, k, 4)
            partner, similarity = duplicates(weights[name])
            positions = max(1, self.sampled * h * w)
            out.append(LayerAnalysis(
                name=name, field=field, activation=self.best[name].float().cpu().numpy(),
                image=self.image[name].cpu().numpy().astype(np.int64), box=box,
                positive=(self.positive[name].double() / positions).float().cpu().numpy(),
                peak=self.peak[name].float().cpu().numpy(), duplicate_of=partner, similarity=similarity))
        self.seconds += time.perf_counter() - started
        return tuple(out)


class Analyst:
    """Makes the analyses of one run, on its training thread: `collecting` around a test pass, then `publish`."""

    def __init__(self, model: nn.Module, size: int, emit: Callable[[object], None]) -> None:
        self._model = model
        self._layers = conv_layers(model)
        self._fields = receptive_fields(model, size)
        self._size = size
        self._emit = emit
        self._pending: Collector | None = None
        self._alone = 0.0  # seconds of a pass made for the analysis alone (step 0)
        self.seconds = 0.0  # training-thread time spent on analyses so far

    @contextmanager
    def collecting(self, alone: bool = False) -> Iterator[Callable[[int], None]]:
        """Watch the test pass in the block (`alone`: the pass is made for the analysis, so all of it counts)."""
        collector = Collector(self._layers)
        started = time.perf_counter()
        with collector.hooked() as batch:
            yield batch
        self._alone = time.perf_counter() - started if alone else 0.0
        self._pending = collector

    def publish(self, seq: int, step: int, epoch: int) -> AnalysisEvent | None:
        """Emit the analysis of the pass just watched as snapshot `seq`'s (None if no pass was watched)."""
        collector, self._pending = self._pending, None
        if collector is None or collector.failed or not collector.best:
            return None
        hooks = collector.seconds
        try:
            layers = collector.finish(self._model, self._fields, self._size)
        except Exception:  # never the run's end: this moment simply has no analysis
            log.exception("filter analysis of snapshot %d failed", seq)
            return None
        seconds = (self._alone or hooks) + collector.seconds - hooks  # the pass (or its hooks), and finishing
        self.seconds += seconds
        event = AnalysisEvent(seq=seq, step=step, epoch=epoch, seconds=seconds, layers=layers)
        self._emit(event)
        return event


def analyse(model: nn.Module, x: torch.Tensor, batch: int = 1000) -> tuple[LayerAnalysis, ...]:
    """The analysis of `model` (in eval mode) on images `x` (N, C, H, W), in one pass: for replays and tests."""
    layers = conv_layers(model)
    collector = Collector(layers)
    was_training = model.training
    model.eval()
    try:
        with collector.hooked() as seen, torch.no_grad():
            for i in range(0, x.shape[0], batch):
                seen(i)
                model(x[i:i + batch])
    finally:
        model.train(was_training)
    return collector.finish(model, receptive_fields(model, int(x.shape[-1])), int(x.shape[-1]))


def receptive_fields(model: nn.Module, size: int) -> dict[str, Field]:
    """Every conv layer's receptive field for `size` x `size` inputs, on the graph that runs (fields.py)."""
    layers = conv_layers(model)
    if not layers:
        return {}
    return graph_fields(model, {layer.name: layer.conv for layer in layers},
                        (layers[0].conv.in_channels, size, size))
