"""What the loop records: step losses, snapshots on a cadence dense at the start, and what that costs.

The recorder owns everything about the moments a person will look at: the snapshot counter, when to take
one, the conv weights at the previous snapshot (so ΔW is "since the last picture"), step 0's weights and the
running peaks (`Reference`), the probe image, the losses not yet sent, and `instrument_seconds`, the
training time spent on filterscope's own work rather than on learning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .diagnose import Diagnosis
from .events import StepsEvent
from .loop import TrainLoop
from .models import conv_layers
from .snapshots import Probe, Reference, Snapshot, capture, conv_weights

# Filters change fastest at the very start: a snapshot after each of the first 10 batches, then every 5 up
# to batch 100, then every `snapshot_every` (and at every epoch end). docs/protocol.md says the same.
DENSE_EVERY_BATCH = 10
DENSE_EVERY_5 = 100


def is_snapshot_step(step: int, every: int) -> bool:
    """Whether a snapshot follows optimizer step `step` (1-based) on the cadence (epoch ends aside)."""
    return step <= DENSE_EVERY_BATCH or (step <= DENSE_EVERY_5 and step % 5 == 0) or step % every == 0


# Per conv layer: (the weight, its data pointer, name, flat view of W, W a batch ago, scratch), all on the CPU.
WeightViews = list[tuple[torch.Tensor, int, str, np.ndarray, np.ndarray, np.ndarray]]


class Recorder:
    """Turns the loop's moments into events: `emit` is called from the training thread."""

    # Flush batch losses to listeners at least this often, so the curve moves between snapshots.
    STEPS_FLUSH = 25

    def __init__(self, loop: TrainLoop, emit: Callable[[object], None], probe: Probe) -> None:
        self._loop = loop
        self._emit = emit
        self.probe = probe
        self.reference = Reference()  # step 0's weights and the run's largest values, for every snapshot
        self.seq = 0  # the next snapshot's number
        self.last_seq = -1  # the latest snapshot's number
        self.instrument_seconds = 0.0
        self._layers = conv_layers(loop.model)
        self._previous = conv_weights(self._layers)  # conv weights at the latest snapshot
        self._pending: list[float] = []  # losses since the latest snapshot
        self._unsent_steps: list[int] = []
        self._unsent_losses: list[float] = []
        self._unsent_ratios: dict[str, list[float]] = {layer.name: [] for layer in self._layers}
        self._views: WeightViews | None = None  # on the CPU: NumPy views of W and W a batch ago (see _numpy_views)
        self._last: dict[str, torch.Tensor] = {}  # elsewhere: copies of W a batch ago
        self._watch_weights()
        self.diagnosis = Diagnosis(len(loop.info.classes), loop.config.optimizer, loop.config.init)
        self._frozen = frozenset(loop.config.freeze)

    def batch(self, loss: float, elapsed: float) -> bool:
        """Record one batch's loss; take a snapshot if the cadence says so (True if it did)."""
        started = time.perf_counter()
        step = self._loop.step_count
        self._pending.append(loss)
        self._unsent_steps.append(step)
        self._unsent_losses.append(loss)
        ratios = self._update_ratios()
        if self._frozen:  # a frozen layer's steps are zero by design: no sign of a learning rate too small
            ratios = {name: r for name, r in ratios.items() if name not in self._frozen}
        for warning in self.diagnosis.batch(step, loss, ratios, self._loop.lr):
            self._emit(warning)
        if len(self._unsent_steps) >= self.STEPS_FLUSH:
            self.flush_steps()
        self.instrument_seconds += time.perf_counter() - started
        if self._loop.epoch_complete or not is_snapshot_step(step, self._loop.config.snapshot_every):
            return False  # the epoch's end takes its own snapshot, after the test evaluation
        self.snapshot(elapsed, epoch_end=False)
        return True

    def _update_ratios(self) -> dict[str, float]:
        """||W - W a batch ago|| / ||W a batch ago|| per conv layer: how big this step was (about 1e-3 learns).

        On the CPU through NumPy views of the weights (the optimizer updates them in place): ~15 us a batch for
        `tiny`, against ~40 us for the same through torch, whose every op costs a dispatch.
        """
        if self._views is not None and any(w.data_ptr() != ptr for w, ptr, *_ in self._views):
            self._views = self._numpy_views([last for *_, last, _ in self._views])  # the storage was replaced
            if self._views is None:  # the weights left the CPU: measure from here on with copies
                self._watch_weights()
        squares: list[tuple[str, float, float]] = []  # (layer, ||ΔW||², ||W a batch ago||²)
        if self._views is not None:
            with np.errstate(over="ignore", invalid="ignore"):  # an exploding run's weights: inf, its ratio NaN
                for (_, _, name, now, last, buf) in self._views:
                    np.subtract(now, last, out=buf)
                    squares.append((name, float(buf @ buf), float(last @ last)))
                    np.copyto(last, now)
        else:
            lasts = list(self._last.values())
            weights = [layer.conv.weight.detach() for layer in self._layers]
            with torch.no_grad():  # one op for all layers at a time: ~40 us a batch, not ~100
                moved = torch._foreach_norm(torch._foreach_sub(weights, lasts))
                sizes = torch._foreach_norm(lasts)
                values = torch.stack([*moved, *sizes]).tolist()
                torch._foreach_copy_(lasts, weights)
            n = len(lasts)
            squares = [(name, values[i] ** 2, values[n + i] ** 2) for i, name in enumerate(self._last)]
        ratios = {}
        for name, step_sq, size_sq in squares:
            ratios[name] = ratio = math.sqrt(step_sq / size_sq) if size_sq > 0 else float("nan")
            self._unsent_ratios[name].append(ratio)
        return ratios

    def _watch_weights(self) -> None:
        """Keep W as it is now, to measure the next batch's step against: NumPy views on the CPU, else copies."""
        self._views = self._numpy_views()
        self._last = {} if self._views is not None else \
            {layer.name: layer.conv.weight.detach().clone() for layer in self._layers}  # W a batch ago

    def _numpy_views(self, lasts: list[np.ndarray] | None = None) -> WeightViews | None:
        """(weight, its data pointer, name, flat view of W, W a batch ago, scratch) per layer; None off the CPU.

        `lasts`: W a batch ago to keep (when only the parameters' storage changed); else W now."""
        weights = [layer.conv.weight.detach() for layer in self._layers]
        if not all(w.device.type == "cpu" and w.is_contiguous() for w in weights):
            return None
        views = []
        for i, (layer, w) in enumerate(zip(self._layers, weights, strict=True)):
            now = w.numpy().reshape(-1)  # shares the parameter's memory
            views.append((w, w.data_ptr(), layer.name, now, now.copy() if lasts is None else lasts[i],
                          np.empty_like(now)))
        return views

    def flush_steps(self) -> None:
        """Send the losses (and update ratios) not yet sent."""
        started = time.perf_counter()
        if self._unsent_steps:
            self._emit(StepsEvent(self._unsent_steps, self._unsent_losses, self._unsent_ratios))
            self._unsent_steps, self._unsent_losses = [], []
            self._unsent_ratios = {name: [] for name in self._unsent_ratios}
        self.instrument_seconds += time.perf_counter() - started

    def snapshot(self, elapsed: float, *, epoch_end: bool, refresh: bool = False, clocked: bool = True) -> Snapshot:
        """Take and emit a snapshot; `refresh` marks one taken without training (start, a new probe).

        `clocked`: its cost counts as training time spent on our work (not for a probe shown while paused).
        """
        started = time.perf_counter()
        self.flush_steps()
        loop = self._loop
        pending = self._pending
        snap = capture(loop.model, self._layers, self._previous, self.probe, self.reference, seq=self.seq,
                       step=loop.step_count, epoch=loop.epoch, samples_seen=loop.samples_seen,
                       loss=float(np.mean(pending)) if pending else float("nan"), lr=loop.current_lr,
                       elapsed=elapsed, instrument_seconds=self.instrument_seconds, epoch_end=epoch_end)
        self.last_seq = self.seq
        self.seq += 1
        self._emit(snap)
        if not refresh and loop.step_count > 0:
            grads = {layer.name: layer.grad for layer in snap.layers}
            for warning in self.diagnosis.snapshot(loop.step_count, grads, loop.lr):
                self._emit(warning)
        if not refresh:  # the next update is measured from here; a refresh leaves the weights untouched
            self._previous = conv_weights(self._layers)
            self._pending = []
        if clocked:
            self.instrument_seconds += time.perf_counter() - started
        return snap

    # ---- checkpoints -------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The recorder's part of a checkpoint (steps are flushed first, so none is left behind)."""
        self.flush_steps()
        probe = self.probe
        return {
            "seq": self.seq, "last_seq": self.last_seq, "instrument_seconds": self.instrument_seconds,
            "previous": {k: v.clone() for k, v in self._previous.items()},
            "pending": list(self._pending),
            "start": {k: torch.from_numpy(v.copy()) for k, v in self.reference.start.items()},
            "peaks": {k: dict(v) for k, v in self.reference.peaks.items()},
            "probe": {"pixels": torch.from_numpy(probe.pixels.copy()), "index": probe.index, "label": probe.label,
                      "source": probe.source},
        }

    def restore(self, state: dict[str, Any], make_probe: Callable[[np.ndarray, int | None, int | None, str], Probe],
                ) -> None:
        """Go on from a checkpoint's recorder part."""
        self.seq, self.last_seq = int(state["seq"]), int(state["last_seq"])
        self.instrument_seconds = float(state["instrument_seconds"])
        self._previous = {k: v.clone() for k, v in state["previous"].items()}
        self._pending = list(state["pending"])
        self.reference.start = {k: v.numpy().copy() for k, v in state["start"].items()}
        self.reference.peaks = {k: dict(v) for k, v in state["peaks"].items()}
        self._watch_weights()
        p = state["probe"]
        self.probe = make_probe(p["pixels"].numpy().copy(), p["index"], p["label"], p["source"])
