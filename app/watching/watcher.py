"""`filterscope.watch(model)`: a person's own training script recorded as a run any filterscope server shows.

The script keeps its loop; the watcher is called once a step (`watcher.step(loss)`, after `optimizer.step()`)
and, if the script likes, once an epoch. It writes the run where a server keeps runs (the data directory's
run log, under the run's lease, as `filterscope train` does), so a `filterscope serve` on that directory lists
it and streams it live; when the script ends the run is there like any other.

What it records, on the cadence of built-in runs (a snapshot after each of the first 10 steps, every 5 to step
100, then every `snapshot_every`, and at each `epoch()`): for every `nn.Conv2d` of the model wherever it sits,
W, dL/dW of the step (copied by an optimizer step pre-hook, so it is the gradient the optimizer used, whatever
the script does with `.grad` afterwards), ΔW since the previous snapshot, and the probe image's maps before and
after the activation (probe.py). Deep layers are sampled within `budget` bytes a snapshot (plan.py).

Never in the way: the model is read, never written: no parameter, gradient, buffer, module mode or random
state changes (the probe runs in eval mode with every mode restored, the random state forked), so a watched
run ends with the same weights as an unwatched one of the same seed. Encoding and disk writes happen on the run
log's writer thread; a snapshot the writer cannot keep up with is skipped and counted (record.py). Any failure
inside the watcher (a data directory that cannot be written, a model it cannot read) gives one warning and
switches recording off; the script trains on.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import secrets
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..record.images import MAX_BYTES as MAX_IMAGE_BYTES
from ..record.images import save_images
from ..record.lease import run_lease
from ..record.record import RunRecord, new_stored_run
from ..record.store import Store, token_hash
from ..runs.handle import WATCH
from ..runs.local import log_event
from ..streaming.codec import encode_snapshot
from ..training.analysis import AnalysisEvent, Collector
from ..training.events import EpochSummary, FrameEvent, Status, StatusEvent, StepsEvent
from ..training.fields import graph_fields, quiet
from ..training.recorder import is_snapshot_step
from ..training.snapshots import LayerSnapshot, Probe, ProbeMaps, Reference, Snapshot
from .config import WatchedConfig
from .plan import BUDGET, LayerPlan, plan_layers
from .probe import read_probe

log = logging.getLogger(__name__)

WHAT = "filterscope.watch"
SNAPSHOT_EVERY = 50
STEPS_FLUSH = 25  # losses go to the run log at least this often, so the curve moves between snapshots
ANALYSIS_IMAGES = 2000  # images for "what each filter detects": mnist's test set's size; more costs the loop


class Watcher:
    """Records one training run of a person's model (see the module's docstring); made by `watch`."""

    def __init__(self, model: nn.Module, *, optimizer: torch.optim.Optimizer | None = None,
                 probe: torch.Tensor | None = None, images: torch.Tensor | None = None,
                 classes: list[str] | None = None, name: str | None = None,
                 data_dir: str | os.PathLike[str] | None = None, snapshot_every: int = SNAPSHOT_EVERY,
                 budget: int = BUDGET, epochs: int | None = None, steps_per_epoch: int | None = None,
                 say: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"watch() takes a torch.nn.Module, not {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, not {type(optimizer).__name__}")
        if snapshot_every < 1 or budget < 1:
            raise ValueError("snapshot_every and budget must be at least 1")
        self.model = model
        self.module: nn.Module = getattr(model, "_orig_mod", model)  # a torch.compile'd model: its own module
        self.optimizer = optimizer
        self.run_id: str | None = None
        self.token: str | None = None
        self.data_dir = Path(data_dir) if data_dir is not None else _default_data_dir()
        self.steps = 0  # optimizer steps seen
        self.epochs_done = 0
        self.snapshots = 0
        self._snapshot_step = -1  # the step of the latest snapshot
        self.instrument_seconds = 0.0  # seconds of the person's loop spent here
        self._name, self._classes = name, classes
        self._images = None if images is None else images[:ANALYSIS_IMAGES]
        self._every, self._budget = snapshot_every, budget
        self._epochs, self._steps_per_epoch = epochs, steps_per_epoch
        self._say = say
        self._off: str | None = None  # why recording stopped
        self._closed = False
        self._lock = threading.Lock()
        self._began = time.monotonic()
        self._handles: list[Any] = []
        self._grads: dict[str, np.ndarray] = {}  # dL/dW of the coming snapshot step, from the step pre-hook
        self._grad_step = -1
        self._grad_refs: dict[str, torch.Tensor | None] = {}  # the gradients the optimizer last stepped with
        self._grad_ref_step = -1
        self._pending: list[float] = []  # losses since the latest snapshot
        self._epoch_losses: list[float] = []
        self._unsent: tuple[list[int], list[float], dict[str, list[float]]] = ([], [], {})
        self._convs = {n: m for n, m in self.module.named_modules() if isinstance(m, nn.Conv2d)}
        self._store: Store | None = None
        self._record: RunRecord | None = None
        self._lease: Any = None
        self._probe: Probe | None = None
        self._probe_x: torch.Tensor | None = None
        self._plan: list[LayerPlan] = []
        self._reference = Reference()
        self._previous: dict[str, np.ndarray] = {}
        self._last: dict[str, torch.Tensor] = {}  # full conv weights a step ago: the step-size ratios
        self._fields: dict[str, Any] = {}
        if not self._convs:
            self._stop("the model has no nn.Conv2d layer: there are no filters to show")
            return
        self._guard(self._attach, probe)
        atexit.register(_close_at_exit, weakref.ref(self))

    # ---- the person's calls: none of them raises into the loop -------------------------------------------

    def step(self, loss: float | torch.Tensor | None = None) -> None:
        """After `optimizer.step()`: count the step, keep its loss, and take a snapshot if the cadence says so."""
        if self._off is not None or self._closed:
            return
        self._guard(self._step, loss)

    def epoch(self, **figures: float) -> None:
        """At an epoch's end (optional): its figures for the charts (test_accuracy, test_loss, train_accuracy,
        as fractions and losses), a snapshot, and what each filter detects if `images` were given."""
        if self._off is not None or self._closed:
            return
        self._guard(self._epoch, figures)

    def close(self, status: Status = Status.FINISHED, message: str | None = None) -> None:
        """Record the final moment and end the run (also at `with` exit and at interpreter exit)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for h in self._handles:
            h.remove()
        self._handles = []
        if self._off is None and self._record is not None:
            self._guard(self._finish, status, message)
        self._release()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        if kind is None:
            self.close()
        elif issubclass(kind, KeyboardInterrupt):
            self.close(Status.STOPPED, "The script was stopped (Ctrl+C).")
        else:
            self.close(Status.FAILED, f"The script raised {kind.__name__}: {exc}"[:500])

    # ---- inside ------------------------------------------------------------------------------------------

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        started = time.perf_counter()
        try:
            fn(*args)
        except Exception as exc:  # never the person's loop: say it once, record no more
            log.debug("watch failed", exc_info=True)
            self._stop(f"{type(exc).__name__}: {exc}")
        finally:
            self.instrument_seconds += time.perf_counter() - started

    def _stop(self, why: str) -> None:
        if self._off is None:
            self._off = why
            sentence = f"filterscope: not recording this run any more ({why}); training goes on."
            try:
                warnings.warn(sentence, RuntimeWarning, stacklevel=3)
            except Warning:  # warnings made errors (-W error): still never an exception in the loop
                log.warning(sentence)
            if self._record is not None:
                with _quietly():
                    self._record.on_event(self._status(Status.FAILED, f"Recording stopped: {why}"[:500]))
            self._release()

    def _attach(self, probe: torch.Tensor | None) -> None:
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._before_step))
        if probe is not None:
            self._begin(probe)
        else:  # the first batch's first image, taken as the model first runs (weights still at step 0)
            self._handles.append(self.model.register_forward_pre_hook(self._first_input))

    def _first_input(self, _m: nn.Module, args: tuple[Any, ...]) -> None:
        handle = self._handles.pop()  # this hook
        handle.remove()
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() >= 3 and self._off is None:
            self._guard(self._begin, args[0][:1])
        elif self._off is None:
            self._stop("the model's first input is not an image tensor; pass probe= to watch()")

    def _begin(self, probe: torch.Tensor) -> None:
        """Everything that needs the probe: the layers' geometry, the sampling plan, the run in the run log."""
        x = probe.detach()
        x = x.unsqueeze(0) if x.dim() == 3 else x[:1]
        param = next(iter(self.module.parameters()), None)
        if param is not None:
            x = x.to(device=param.device, dtype=param.dtype)
        self._probe_x = x
        read = read_probe(self.module, self._convs, x)
        shape = tuple(int(v) for v in x.shape[1:])
        self._plan = plan_layers(self._convs, read, self._budget)
        self._fields = graph_fields(self.module, {p.name: self._convs[p.name] for p in self._plan}, shape)  # type: ignore[arg-type]
        self._probe = Probe(pixels=_pixels(x[0]), tensor=x, index=None, label=None, source="watch")
        n_out = int(read.probs.shape[0])
        classes = list(self._classes) if self._classes else [str(i) for i in range(n_out)]
        self._classes = classes
        self._open_run(shape, classes)
        self._last = {p.name: self._convs[p.name].weight.detach().clone() for p in self._plan}
        self._snapshot(epoch_end=False)
        if self._images is not None:
            self._analyse(seq=0)

    def _open_run(self, shape: tuple[int, ...], classes: list[str]) -> None:
        self.run_id, self.token = "r" + secrets.token_hex(4), secrets.token_urlsafe(24)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        dataset = "own data"
        if self._images is not None:  # kept with the run: the top patches are cut from them (record/images.py)
            per_image = max(1, int(np.prod(self._images.shape[1:])))
            self._images = self._images[:max(1, MAX_IMAGE_BYTES // per_image)]
            save_images(self.data_dir, self.run_id, _pixels(self._images))
            dataset = f"run:{self.run_id}"
        opt = self.optimizer
        lr = float(opt.param_groups[0].get("lr", math.nan)) if opt is not None and opt.param_groups else None
        config = WatchedConfig(name=(self._name or type(self.module).__name__)[:200],
                               model=type(self.module).__name__[:200], dataset=dataset,
                               optimizer=type(opt).__name__ if opt is not None else None,
                               lr=lr if lr is not None and math.isfinite(lr) else None, epochs=self._epochs,
                               input=list(shape), snapshot_every=self._every, budget=self._budget,
                               compiled=self.module is not self.model)
        total = self._epochs * self._steps_per_epoch if self._epochs and self._steps_per_epoch else 0
        meta = {"config": config.model_dump(), "kind": "watch", "capabilities": WATCH.as_dict(),
                "producer": {"pid": os.getpid(), "what": WHAT},
                "steps_per_epoch": self._steps_per_epoch or 0, "total_steps": total,
                "threads": torch.get_num_threads(), "classes": classes,
                "layers": [p.meta() for p in self._plan]}
        store = Store(self.data_dir / "runs.db")
        self._store = store
        self._lease = run_lease(self.data_dir, self.run_id)
        self._lease.acquire(what=WHAT)
        stored = new_stored_run(self.run_id, token_hash(self.token), meta, lr if lr is not None else 0.0)
        store.add_run(stored)
        self._record = RunRecord(stored, store)
        self._record.on_event(self._status(Status.RUNNING, None))
        if self._say:
            print(f"filterscope: recording run {self.run_id} ({config.name}) into {self.data_dir}; "  # noqa: T201
                  f"`filterscope serve` there shows it at /?run={self.run_id} (control token, to delete it: "
                  f"{self.token})", flush=True)

    def _before_step(self, _opt: torch.optim.Optimizer, _args: object, _kwargs: object) -> None:
        """The optimizer is about to step: if a snapshot follows this step, copy dL/dW it is about to use."""
        if self._off is not None or self._record is None:
            return
        upcoming = self.steps + 1
        started = time.perf_counter()
        try:
            # References, not copies (nothing to copy on most steps): a script that sets .grad to None after
            # the step leaves these for an epoch end's or the final snapshot; one that zeroes .grad in place
            # leaves zeros there. On the cadence's steps the gradient is copied now, exact whatever follows.
            self._grad_refs = {p.name: self._convs[p.name].weight.grad for p in self._plan}
            self._grad_ref_step = upcoming
            if is_snapshot_step(upcoming, self._every):
                self._grads = {name: _rows(g, plan) for plan in self._plan
                               if (g := self._grad_refs[(name := plan.name)]) is not None}
                self._grad_step = upcoming
        except Exception as exc:
            self._stop(f"{type(exc).__name__}: {exc}")
        self.instrument_seconds += time.perf_counter() - started

    def _step(self, loss: float | torch.Tensor | None) -> None:
        if self._record is None:
            return  # the probe never came: nothing to record against
        self.steps += 1
        value = float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else \
            float(loss) if loss is not None else math.nan
        self._pending.append(value)
        self._epoch_losses.append(value)
        steps, losses, ratios = self._unsent
        steps.append(self.steps)
        losses.append(value)
        for name, ratio in self._ratios().items():
            ratios.setdefault(name, []).append(ratio)
        if len(steps) >= STEPS_FLUSH:
            self._flush_steps()
        if is_snapshot_step(self.steps, self._every):
            self._snapshot(epoch_end=False)

    def _ratios(self) -> dict[str, float]:
        """||W − W a step ago|| / ||W a step ago|| per recorded layer: how big this step was."""
        names = list(self._last)
        weights = [self._convs[n].weight.detach() for n in names]
        lasts = [self._last[n] for n in names]
        with torch.no_grad():
            moved = torch._foreach_norm(torch._foreach_sub(weights, lasts))
            sizes = torch._foreach_norm(lasts)
            values = torch.stack([*moved, *sizes]).tolist()
            torch._foreach_copy_(lasts, weights)
        n = len(names)
        return {name: values[i] / values[n + i] if values[n + i] > 0 else math.nan for i, name in enumerate(names)}

    def _flush_steps(self) -> None:
        steps, losses, ratios = self._unsent
        if steps and self._record is not None:
            self._record.on_event(StepsEvent(steps, losses, ratios))
        self._unsent = ([], [], {})

    def _epoch(self, figures: dict[str, float]) -> None:
        if self._record is None:
            return
        self.epochs_done += 1
        self._flush_steps()
        train_loss = float(np.mean(self._epoch_losses)) if self._epoch_losses else math.nan
        self._epoch_losses = []
        self._record.on_event(EpochSummary(
            epoch=self.epochs_done, step=self.steps, train_loss=float(figures.get("train_loss", train_loss)),
            test_loss=float(figures.get("test_loss", math.nan)),
            test_accuracy=float(figures.get("test_accuracy", math.nan)), lr=self._lr(),
            wall_time=time.monotonic() - self._began,
            train_accuracy=float(figures["train_accuracy"]) if "train_accuracy" in figures else None))
        seq = self._snapshot(epoch_end=True)
        if self._images is not None:
            self._analyse(seq)

    def _lr(self) -> float:
        opt = self.optimizer
        if opt is None or not opt.param_groups:
            return 0.0
        lr = opt.param_groups[0].get("lr", 0.0)
        return float(lr) if isinstance(lr, (int, float, torch.Tensor)) else 0.0

    def _snapshot(self, *, epoch_end: bool) -> int:
        assert self._record is not None and self._probe is not None and self._probe_x is not None
        self._flush_steps()
        read = read_probe(self.module, self._convs, self._probe_x, {p.name: p.filters for p in self._plan})
        maps = ProbeMaps.given({name: x.fmap for name, x in read.layers.items()},
                               {name: x.preact for name, x in read.layers.items()}, read.probs)
        shots = []
        for p in self._plan:
            conv = self._convs[p.name]
            weight = _rows(conv.weight, p)
            latest = self._grad_refs.get(p.name) if self._grad_ref_step == self.steps else None
            if self._grad_step == self.steps and p.name in self._grads:
                grad = self._grads[p.name]
            elif latest is not None:  # off the cadence (an epoch's end): the step's gradient, as it is now
                grad = _rows(latest, p)
            else:  # no optimizer given: the gradient as the model holds it now
                grad = _rows(conv.weight.grad, p) if conv.weight.grad is not None else np.zeros_like(weight)
            previous = self._previous.get(p.name)
            tensors = {"weight": weight, "grad": grad,
                       "update": weight - previous if previous is not None else np.zeros_like(weight)}
            start, peaks = self._reference.observe(p.name, tensors)
            layer = read.layers[p.name]
            shots.append(LayerSnapshot(name=p.name, **tensors, maps=maps, start=start, peaks=peaks, relu=layer.relu,
                                       pool=layer.pool))
            self._previous[p.name] = weight
        seq = self.snapshots
        snap = Snapshot(seq=seq, step=self.steps, epoch=self.epochs_done, samples_seen=0,
                        loss=float(np.mean(self._pending)) if self._pending else math.nan, lr=self._lr(),
                        elapsed=time.monotonic() - self._began, instrument_seconds=self.instrument_seconds,
                        epoch_end=epoch_end, layers=tuple(shots), probe=self._probe, maps=maps, model={})
        self._pending = []
        self._grads = {}
        self.snapshots += 1
        self._snapshot_step = self.steps
        self._record.on_event(FrameEvent(seq=seq, step=snap.step, epoch=snap.epoch, epoch_end=epoch_end,
                                         samples_seen=0, elapsed=snap.elapsed,
                                         instrument_seconds=snap.instrument_seconds,
                                         frame=lambda: encode_snapshot(snap), model=None))
        self._check_storage()
        return seq

    def _analyse(self, seq: int) -> None:
        """What each filter detects, on the script's `images`, for snapshot `seq` (analysis.py's collector)."""
        assert self._record is not None and self._images is not None
        layers = [_Hooked(p.name, self._convs[p.name]) for p in self._plan if p.name in self._fields]
        if not layers:
            return
        collector = Collector(layers)  # type: ignore[arg-type]
        started = time.perf_counter()
        param = next(iter(self.module.parameters()))
        with quiet(self.module), torch.no_grad(), collector.hooked() as seen:
            for i in range(0, self._images.shape[0], 250):
                seen(i)
                self.module(self._images[i:i + 250].to(device=param.device, dtype=param.dtype))
        size = (int(self._images.shape[-2]), int(self._images.shape[-1]))
        analysed = collector.finish(self.module, self._fields, size)
        event = AnalysisEvent(seq=seq, step=self.steps, epoch=self.epochs_done,
                              seconds=time.perf_counter() - started, layers=analysed)
        self._record.on_event(log_event(event))

    def _check_storage(self) -> None:
        failure = self._store.writer.failure if self._store is not None else None
        if failure is not None:
            self._stop(failure)

    def _status(self, status: Status, message: str | None) -> StatusEvent:
        return StatusEvent(status=status, message=message, epoch=self.epochs_done, step=self.steps, lr=self._lr(),
                           elapsed=time.monotonic() - self._began, instrument_seconds=self.instrument_seconds)

    def _finish(self, status: Status, message: str | None) -> None:
        assert self._record is not None
        if self._snapshot_step != self.steps:
            self._snapshot(epoch_end=False)  # the final moment
        self._flush_steps()
        self._record.on_event(self._status(status, message))

    def _release(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            with _quietly():
                store.flush()
                store.close()
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()


class _Hooked:
    """A conv layer as the analysis collector hooks it: its own output (before any activation)."""

    def __init__(self, name: str, conv: nn.Conv2d) -> None:
        self.name, self.conv, self.activation = name, conv, conv


class _quietly:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        if exc[0] is not None:
            log.debug("ignored while ending a watched run", exc_info=True)
        return True


def _rows(t: torch.Tensor | None, plan: LayerPlan) -> np.ndarray:
    """The recorded part of a layer's weight (or gradient), as a float32 CPU copy."""
    assert t is not None
    return t.detach()[:plan.filters, :plan.channels].to("cpu", torch.float32, copy=True).numpy()


def _pixels(x: torch.Tensor) -> np.ndarray:
    """Images (C, H, W) or (N, C, H, W) as a person would see them: stretched to 0-255 over all of them (grey
    from the first channel unless RGB)."""
    a = x.detach().float().cpu()
    channels = a.shape[-3]
    a = a if channels in (1, 3) else a[..., :1, :, :]
    lo, hi = float(a.min()), float(a.max())
    scaled = (a - lo) / (hi - lo) * 255 if hi > lo else torch.zeros_like(a)
    return scaled.round().clamp(0, 255).to(torch.uint8).numpy()


def _default_data_dir() -> Path:
    from ..config import Settings
    return Settings().data_dir


def _close_at_exit(ref: weakref.ref[Watcher]) -> None:
    watcher = ref()
    if watcher is not None:
        watcher.close()


def watch(model: nn.Module, **options: Any) -> Watcher:
    """Record `model`'s filters as it trains in this script; see Watcher and the README's "Your own model"."""
    return Watcher(model, **options)
