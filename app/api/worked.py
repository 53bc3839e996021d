"""One filter's arithmetic worked at any snapshot: the convolution forward and backward for the probe, and the
optimizer's last step with its own state (training/worked.py does the work; this router finds the model).

The model at a snapshot is the one inspect uses (RunManager.model_state: kept, a checkpoint, or replayed); the
optimizer's state is the loop replayed to the step before (training/replay.py). Both are rebuilt on the
low-priority worker, so a person clicking pixels never slows a run; the last few answers' sources are kept per
app, so that clicking around one moment replays once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from pydantic import BaseModel

from ..background import Lane
from ..runs import Run, RunManager
from ..schemas import SnapshotRef
from ..streaming.codec import decode_frame
from ..training.data import normalise
from ..training.datasets import get_dataset
from ..training.events import StateError
from ..training.replay import replay
from ..training.worked import (
    LayerForward,
    ProbeForward,
    StepWorked,
    grad_by_formula,
    model_at,
    pixel_worked,
    predicted_update,
    probe_forward_backward,
    step_worked,
)
from .deps import INDEX_MAX, FilterPath, ManagerDep, RunDep, SeqPath
from .errors import shown
from .history import conv_layer
from .inspect import LanesDep, lane_for, viewer
from .limits import Lanes

router = APIRouter(prefix="/api/runs", tags=["worked"])
L = TypeVar("L")  # a worked answer's layer (the forward pass's or the step's)

T = TypeVar("T")
Numbers = Any  # nested lists of floats, shaped as the array they come from (the shape in each field's comment)


class Sources:
    """The last few moments' worked sources per app (a probe's pass through every layer, a replayed step). A
    source asked for while it is being made is waited for, not made twice (a thread-safe future: any event loop
    may ask)."""

    CAPACITY = 8  # a few moments of a few runs: each is ~50 KB for `tiny`, ~1 MB for `classic` with Adam

    def __init__(self) -> None:
        self._kept: OrderedDict[tuple[str, int, str], Any] = OrderedDict()
        self._making: dict[tuple[str, int, str], Future[Any]] = {}
        self._lock = threading.Lock()

    async def get(self, key: tuple[str, int, str], make: Callable[[], Awaitable[T]]) -> T:
        """The source kept under `key`, or the one being made, or `make()` awaited (on a lane, limits.py) and kept."""
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                found: T = self._kept[key]
                return found
            under_way = self._making.get(key)
            if under_way is None:
                mine: Future[Any] = Future()
                self._making[key] = mine
        if under_way is not None:
            return await asyncio.wrap_future(under_way)
        try:
            made = await make()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):  # the request that asked went away: the others ask again
                exc = StateError("These numbers were being worked out for a request that went away; ask again.")
            mine.set_exception(exc)
            mine.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            mine.set_result(made)
            with self._lock:
                self._kept[key] = made
                while len(self._kept) > self.CAPACITY:
                    self._kept.popitem(last=False)
        finally:
            with self._lock:
                del self._making[key]
        return made


async def sources(request: Request) -> Sources:
    """The app's worked sources, made on first use (on the event loop: one per app)."""
    found: Sources | None = getattr(request.app.state, "worked", None)
    if found is None:
        found = request.app.state.worked = Sources()
    return found


SourcesDep = Annotated[Sources, Depends(sources)]


def numbers(a: np.ndarray) -> Numbers:
    """`a` as nested lists, each value in the fewest digits that give back its float32 exactly."""
    return np.vectorize(lambda v: float(str(v)), otypes=[object])(np.asarray(a, np.float32)).tolist()


def number(v: float) -> float:
    return float(str(np.float32(v)))


class PoolOut(BaseModel):
    kind: str  # "max" or "avg"
    size: list[int]  # (rows, columns) of a window
    stride: list[int]
    padding: list[int]


class GeometryOut(BaseModel):
    """How the input's size becomes the map's: (H + pads − dilation·(k − 1) − 1) / stride + 1, then pooled."""

    input_size: list[int]  # (H, W) of the layer's input
    kernel: list[int]  # (kh, kw)
    padding: list[int]  # (top, bottom, left, right)
    padding_mode: str
    stride: list[int]
    dilation: list[int]
    groups: int
    output_size: list[int]  # (H', W')
    pool: PoolOut | None
    pooled_size: list[int] | None  # (H'', W'')


class TargetOut(BaseModel):
    index: int
    name: str
    is_label: bool  # the probe's true class; else (an uploaded probe) the class the model predicts
    probability: float


class PixelOut(BaseModel):
    """Output pixel (y, x), counted from 0: patch × kernel summed, plus the bias, then the activation and pool."""

    y: int
    x: int
    patch: Numbers  # (C, kh, kw) the padded input under the kernel: rows y·stride + i·dilation of `input`
    products: Numbers  # (C, kh, kw) patch × kernel
    sum: float  # Σ products
    bias: float
    preact: float  # sum + bias
    module_preact: float  # the conv module's own output there (the same up to float rounding)
    output: float  # after the activation
    window: list[int] | None  # (y0, x0, y1, x1), ends excluded: the pooling window it lies in (None: dropped)
    survivor: list[int] | None  # (y, x) the window's pixel that max pooling keeps
    pooled: float | None


class ConvolutionOut(BaseModel):
    """Filter `filter` of `layer` at a snapshot, for the probe: forward at one pixel, backward for the kernel."""

    snapshot: SnapshotRef
    layer: str
    filter: int  # counted from 0, as W[filter] in PyTorch
    filters: int
    channels: list[int]  # the input channels it reads, counted from 0
    geometry: GeometryOut
    activation: str  # the module after the conv ("ReLU", ...; "none")
    target: TargetOut
    loss: float  # cross-entropy of the probe against the target
    input: Numbers  # (C, H + pads, W + pads) the layer's input for the probe, padded as the conv pads it
    kernel: Numbers  # (C, kh, kw)
    bias: float | None
    preact: Numbers  # (H', W') the conv's output
    output: Numbers  # (H', W') after the activation
    pooled: Numbers | None  # (H'', W'')
    delta: Numbers  # (H', W') δ = dL/d(the conv's output)
    delta_output: Numbers  # (H', W') dL/d(the activation's output): δ before the activation's gate
    grad: Numbers  # (C, kh, kw) dL/dW[c, i, j] = Σ_yx input[c, y·s + i·d, x·s + j·d] · δ[y, x], summed here
    autograd: Numbers  # (C, kh, kw) the same from PyTorch's backward
    grad_bias: float | None  # Σ δ
    pixel: PixelOut


class StepOut(BaseModel):
    """The optimizer step that made the snapshot (the last batch of its span), for every entry of one filter."""

    snapshot: SnapshotRef
    previous: SnapshotRef | None  # the snapshot before: its ΔW is W now − W then
    batches: int  # batches between the two: ΔW is one step when 1
    layer: str
    filter: int  # counted from 0
    step: int  # the step worked (the snapshot's)
    optimizer: str
    lr: float  # the rate this batch used, the schedule applied
    weight_decay: float  # added to dW as weight_decay × W before the rule (L2, for SGD and Adam alike)
    settings: dict[str, Any]  # momentum; or betas and eps
    t: int | None  # Adam's step count (its bias corrections are 1 − β^t)
    before: Numbers  # (C, kh, kw) W before the step
    grad: Numbers  # (C, kh, kw) this batch's dW
    state_before: dict[str, Numbers]  # "m", "v" (Adam), "velocity" (momentum): empty before the first step
    state_after: dict[str, Numbers]
    predicted: Numbers  # (C, kh, kw) ΔW by the optimizer's rule, from the state before and dW
    after: Numbers  # (C, kh, kw) W after the step, replayed: the snapshot's W
    delta: Numbers  # (C, kh, kw) after − before


def _snapshot(run: Run, seq: int) -> tuple[SnapshotRef, SnapshotRef | None]:
    if not run.capabilities.inspectable:
        raise HTTPException(409, run.not_inspectable())
    refs = [SnapshotRef(seq=r.seq, step=r.step, epoch=r.epoch, epoch_end=r.epoch_end)
            for r in run.record.snapshot_list()]
    for i, ref in enumerate(refs):
        if ref.seq == seq:
            return ref, refs[i - 1] if i > 0 else None
    raise HTTPException(404, f"Run {run.id} has no snapshot {seq}; GET /api/runs/{run.id}/snapshots lists its "
                             "snapshots.")


def _filter(run: Run, layer: str, index: int, count: int) -> None:
    if index >= count:
        raise HTTPException(404, f"Layer {layer} has {count} filters, counted from 0: ask for 0 to {count - 1}, "
                                 f"not {index}.")


def _probe_pass(runs: RunManager, run: Run, ref: SnapshotRef) -> ProbeForward:
    """The probe of snapshot `ref` through the model of that moment, and back (blocking: on the worker)."""
    config = run.preset
    info = get_dataset(config.dataset).info
    found = runs.store.frame(run.id, ref.seq)
    if found is None:
        raise StateError(f"Snapshot {ref.seq} is not stored yet; ask again in a moment.")
    header, arrays = decode_frame(found[0])
    x = normalise(arrays["probe.pixels"], info).unsqueeze(0)  # (1, C, H, W)
    model = model_at(config, info, runs.model_state(run, ref.seq, ref.step))
    label = header["probe"].get("label")
    return probe_forward_backward(model, x, None if label is None else int(label))


def _last_step(runs: RunManager, run: Run, ref: SnapshotRef) -> StepWorked:
    """The step that made snapshot `ref`, replayed from the checkpoint before it (blocking: on the worker)."""
    if not run.capabilities.replayable:
        raise StateError("This run cannot be trained again here, so the optimizer's state at that moment cannot "
                         "be rebuilt.")
    config = run.preset
    start, initial = runs.replay_from(run, ref.step - 1)
    lr_changes = run.record.lr_changes()
    return replay(config, get_dataset(config.dataset).info, ref.step - 1, start, lr_changes,
                  run.record.meta.get("threads"), lambda loop: step_worked(loop, lr_changes), initial)


async def _source(make: Callable[[], T], kept: Sources, key: tuple[str, int, str], lanes: Lanes, lane: Lane,
                  client: str | None) -> T:
    """A worked source, made on `lane` for `client` (None: the run's owner) within the lanes' bounds (429 past
    them), or the one kept or being made."""
    try:
        return await kept.get(key, lambda: lanes.run(lane, client, make, worked=True))
    except StateError as exc:
        raise HTTPException(409, str(exc)) from None


def _geometry(layer: LayerForward) -> GeometryOut:
    g = layer.geometry
    pool = None if g.pool is None else PoolOut(kind=g.pool["kind"], size=g.pool["size"], stride=g.pool["stride"],
                                                padding=g.pool["padding"])
    return GeometryOut(input_size=list(g.size), kernel=list(g.kernel), padding=list(g.padding),
                       padding_mode=g.padding_mode, stride=list(g.stride), dilation=list(g.dilation),
                       groups=g.groups, output_size=list(g.output), pool=pool,
                       pooled_size=None if g.pooled is None else list(g.pooled))


Coordinate = Annotated[int | None, Query(ge=0, le=INDEX_MAX, description="a pixel of the map, counted from 0")]


@router.get("/{run_id}/snapshots/{seq}/convolution/{layer}/{index}",
            responses={404: {"description": "Unknown run, snapshot, layer or filter"},
                       409: {"description": "The run's model cannot be rebuilt here"},
                       422: {"description": "A pixel outside the map, or only one of y and x"}})
async def convolution(run: RunDep, runs: ManagerDep, kept: SourcesDep, lanes: LanesDep, request: Request,
                      seq: SeqPath, layer: str, index: FilterPath, y: Coordinate = None, x: Coordinate = None,
                      authorization: Annotated[str | None, Header()] = None) -> ConvolutionOut:
    """Filter `index` of `layer` at snapshot `seq` on the run's probe: output pixel (y, x) worked forward (the
    map's largest when not given), and the kernel's gradient for the probe worked backward."""
    ref, _ = _snapshot(run, seq)
    conv_layer(run, layer)
    if (y is None) != (x is None):
        raise HTTPException(422, "Give both y and x (the pixel's row and column, counted from 0), or neither.")
    client = viewer(run, request, authorization)
    lane = await lane_for(lanes, runs, run, run.record.find(ref.seq), client)
    seen = await _source(lambda: _probe_pass(runs, run, ref), kept, (run.id, ref.seq, "probe"), lanes, lane, client)
    found = _layer(seen.layers, layer)
    _filter(run, layer, index, found.weight.shape[0])
    ho, wo = found.geometry.output
    if y is None or x is None:
        y, x = (int(v) for v in np.unravel_index(int(np.argmax(found.output[index])), (ho, wo)))
    elif y >= ho or x >= wo:
        raise HTTPException(422, f"Pixel (y {y}, x {x}) is outside {layer}'s {ho}×{wo} map; y counts rows from 0 "
                                 f"to {ho - 1}, x columns from 0 to {wo - 1}.")
    px = pixel_worked(found, index, y, x)
    info = get_dataset(run.preset.dataset).info
    c = found.channels(index)
    return ConvolutionOut(
        snapshot=ref, layer=layer, filter=index, filters=int(found.weight.shape[0]), channels=list(c),
        geometry=_geometry(found), activation=found.activation,
        target=TargetOut(index=seen.target, name=info.classes[seen.target], is_label=seen.labelled,
                         probability=number(float(seen.probs[seen.target]))),
        loss=number(seen.loss), input=numbers(found.padded[c.start:c.stop]), kernel=numbers(found.weight[index]),
        bias=number(float(found.bias[index])) if found.has_bias else None,
        preact=numbers(found.preact[index]), output=numbers(found.output[index]),
        pooled=None if found.pooled is None else numbers(found.pooled[index]),
        delta=numbers(found.delta[index]), delta_output=numbers(found.delta_output[index]),
        grad=numbers(grad_by_formula(found, index)), autograd=numbers(found.grad[index]),
        grad_bias=number(float(found.grad_bias[index])) if found.has_bias else None,
        pixel=PixelOut(y=px.y, x=px.x, patch=numbers(px.patch), products=numbers(px.products),
                       sum=float(px.total), bias=px.bias, preact=float(px.preact), module_preact=px.model_preact,
                       output=px.output, window=None if px.window is None else list(px.window),
                       survivor=None if px.survivor is None else list(px.survivor), pooled=px.pooled),
    )


def _layer(layers: dict[str, L], layer: str) -> L:
    """Layer `layer` of a worked answer's layers, or a 404 naming them."""
    found = layers.get(layer)
    if found is None:
        raise HTTPException(404, f"This run has no conv layer {shown(layer)!r}; its layers are {', '.join(layers)}.")
    return found


@router.get("/{run_id}/snapshots/{seq}/update/{layer}/{index}",
            responses={404: {"description": "Unknown run, snapshot, layer or filter"},
                       409: {"description": "Snapshot 0 (no step yet), or a run that cannot be replayed here"}})
async def update(run: RunDep, runs: ManagerDep, kept: SourcesDep, lanes: LanesDep, request: Request,
                 seq: SeqPath, layer: str, index: FilterPath,
                 authorization: Annotated[str | None, Header()] = None) -> StepOut:
    """The optimizer step that made snapshot `seq` for every entry of filter `index` of `layer`: W before, this
    batch's dW, the optimizer's state before and after, ΔW by its rule and ΔW replayed."""
    ref, previous = _snapshot(run, seq)
    conv_layer(run, layer)
    if ref.step == 0:
        raise HTTPException(409, f"Snapshot {seq} is the model before its first batch: no step has been made yet; "
                                 "ask for a later snapshot.")
    client = viewer(run, request, authorization)
    step = await _source(lambda: _last_step(runs, run, ref), kept, (run.id, ref.seq, "step"), lanes,
                         lanes.owner if client is None else lanes.rebuilds, client)  # a step is always replayed
    found = _layer(step.layers, layer)
    _filter(run, layer, index, found.before.shape[0])
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in step.settings.items()}
    return StepOut(
        snapshot=ref, previous=previous, batches=ref.step - previous.step if previous else ref.step, layer=layer,
        filter=index, step=step.step, optimizer=step.optimizer, lr=step.lr, weight_decay=step.weight_decay,
        settings=settings, t=step.t, before=numbers(found.before[index]), grad=numbers(found.grad[index]),
        state_before={k: numbers(v[index]) for k, v in found.state_before.items()},
        state_after={k: numbers(v[index]) for k, v in found.state_after.items()},
        predicted=numbers(predicted_update(step, layer)[index]), after=numbers(found.after[index]),
        delta=numbers(found.after[index] - found.before[index]),
    )

