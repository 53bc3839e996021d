"""What the loop records: step losses, snapshots on a cadence dense at the start, and what that costs.

The recorder owns everything about the moments a person will look at: the snapshot counter, when to take
one, the conv weights at the previous snapshot (so ΔW is "since the last picture"), step 0's weights and the
running peaks (`Reference`), the probe image, the losses not yet sent, and `instrument_seconds`, the
training time spent on filterscope's own work rather than on learning.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .diagnose import Diagnosis
from .events import StepsEvent
from .loop import TrainLoop
from .models import ConvLayer, conv_layers
from .snapshots import Probe, ProbeModel, Reference, Snapshot, StateCopy, capture, conv_weights

# Filters change fastest at the very start: a snapshot after each of the first 10 batches, then every 5 up
# to batch 100, then every `snapshot_every` (and at every epoch end). docs/protocol.md says the same.
DENSE_EVERY_BATCH = 10
DENSE_EVERY_5 = 100


def is_snapshot_step(step: int, every: int) -> bool:
    """Whether a snapshot follows optimizer step `step` (1-based) on the cadence (epoch ends aside)."""
    return step <= DENSE_EVERY_BATCH or (step <= DENSE_EVERY_5 and step % 5 == 0) or step % every == 0


class Ratios(Mapping[str, list[float]]):
    """Per conv layer, the update ratio of each batch of a run of them, worked out on first use from the ring
    the training thread handed over: by the store's writer thread, which makes the steps' text from them, so
    that the arithmetic (~0.12 ms for 25 batches alone, ~0.23 ms in the training thread) costs training
    nothing. The ring goes back to its pool once read. Pickles as the plain dict it is."""

    def __init__(self, names: list[str], bounds: np.ndarray, ring: np.ndarray, count: int,
                 done: Callable[[np.ndarray], None]) -> None:
        self._names, self._bounds, self._count, self._done = names, bounds, count, done
        self._ring: np.ndarray | None = ring
        self._values: dict[str, list[float]] | None = None
        self._lock = threading.Lock()

    def _made(self) -> dict[str, list[float]]:
        values = self._values
        if values is not None:
            return values
        with self._lock:
            if self._values is None:
                ring, self._ring = self._ring, None
                assert ring is not None
                self._values = _ratios(ring[:self._count + 1], self._names, self._bounds)
                self._done(ring)
            return self._values

    def __getitem__(self, name: str) -> list[float]:
        return self._made()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __reduce__(self) -> tuple[type, tuple[dict[str, list[float]]]]:
        return dict, (dict(self._made()),)


def _ratios(kept: np.ndarray, names: list[str], bounds: np.ndarray) -> dict[str, list[float]]:
    """Each layer's ||W_i - W_i-1|| / ||W_i-1|| for every row i > 0 of `kept` (NaN where W_i-1 is 0 or not
    finite)."""
    moved = kept[1:] - kept[:-1]
    out = {}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # an exploding run's weights
        for name, a, b in zip(names, bounds[:-1], bounds[1:], strict=True):
            step = np.einsum("ij,ij->i", moved[:, a:b], moved[:, a:b])  # float32 sums: ~1e-6 relative
            size = np.einsum("ij,ij->i", kept[:-1, a:b], kept[:-1, a:b])
            ratios = np.sqrt(step / size)
            ratios[~(np.isfinite(ratios) & (size > 0))] = np.nan
            out[name] = ratios.tolist()
    return out


class StepSizes:
    """Each conv layer's update ratio ||W - W a batch ago|| / ||W a batch ago|| for every batch.

    The training thread copies the conv weights into a ring once a batch and, every 25 batches at most
    (`take`), hands the ring over for the ratios to be worked out elsewhere (`Ratios`), going on in another
    from the pool. Measured in the training thread right after a batch (2026-12-06), where every small op runs
    several times slower than alone: the copy through NumPy views of the weights costs ~20-30 us a batch,
    through one torch op ~70 us; subtracting and summing there as well, per batch, had cost ~60-80 us.
    """

    POOL = 4  # rings kept for reuse (each ~26 x the conv weights); more are made while the writer is behind

    def __init__(self, layers: list[ConvLayer], capacity: int) -> None:
        self._layers = layers
        self.names = [layer.name for layer in layers]
        self._capacity = capacity
        self._bounds = np.cumsum([0, *(layer.conv.weight.numel() for layer in layers)])
        self._free: list[np.ndarray] = []
        self._ring = self._new_ring()
        self._views: list[tuple[torch.Tensor, int, np.ndarray]] | None = None
        self._count = 0
        self.reset()

    def _watch(self) -> None:
        """NumPy views of the weights where they are plain CPU float32 arrays; else None (copied each batch)."""
        weights = [layer.conv.weight for layer in self._layers]
        cpu = all(w.device.type == "cpu" and w.dtype == torch.float32 and w.is_contiguous() for w in weights)
        self._views = [(w, w.data_ptr(), w.detach().numpy().reshape(-1)) for w in weights] if cpu else None
        self._sources = [view for _, _, view in self._views or []]

    def _keep(self, row: int) -> None:
        views = self._views
        if views is None or any(w.data_ptr() != ptr for w, ptr, _ in views):  # a parameter got new memory
            self._watch()
            views = self._views
        if views is None:
            for a, b, layer in zip(self._bounds[:-1], self._bounds[1:], self._layers, strict=True):
                self._ring[row, a:b] = layer.conv.weight.detach().reshape(-1).float().cpu().numpy()
            return
        np.concatenate(self._sources, out=self._ring[row])  # one call for every layer

    def reset(self) -> None:
        """Measure the next batch's step from the weights as they are now."""
        self._watch()
        self._keep(0)
        self._count = 0

    def batch(self) -> None:
        """Keep the weights after one more batch (the ring holds `capacity` batches: take before it is full)."""
        self._count += 1
        self._keep(self._count)

    def take(self) -> Mapping[str, list[float]]:
        """Per layer, the ratio of every batch kept since the last take, worked out when first read; the
        latest weights become the next step's start."""
        n = self._count
        if n == 0:
            return {name: [] for name in self.names}
        ring = self._ring
        try:
            self._ring = self._free.pop()
        except IndexError:  # all in use (or none made yet)
            self._ring = self._new_ring()
        self._ring[0] = ring[n]
        self._count = 0
        return Ratios(self.names, self._bounds, ring, n, self._reuse)

    def _new_ring(self) -> np.ndarray:
        """Row 0: W at the start of a run of batches; row i: W after its i-th batch (each conv layer's weights
        flattened side by side, at `_bounds`)."""
        return np.empty((self._capacity + 1, int(self._bounds[-1])), np.float32)

    def _reuse(self, ring: np.ndarray) -> None:
        """A ring whose ratios are worked out (any thread): kept for the next take, up to POOL of them."""
        if len(self._free) < self.POOL:
            self._free.append(ring)


_Chunk = tuple[list[int], list[float], list[float], Mapping[str, list[float]]]  # steps, losses, lrs, ratios


@dataclass(frozen=True)
class _Dead:
    """A snapshot's dL/dW per conv layer, for the dead-filter check."""

    step: int
    grads: dict[str, np.ndarray]
    lr: float


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
        self._probe_model = ProbeModel.of(loop.model, self._layers)  # runs the probe off the training thread
        self._copier = StateCopy(loop.model, self._layers)  # the state in one copy a snapshot
        self._pending: list[float] = []  # losses since the latest snapshot
        self._unsent_steps: list[int] = []
        self._unsent_losses: list[float] = []
        self._unsent_lrs: list[float] = []
        self._sizes = StepSizes(self._layers, self.STEPS_FLUSH)
        self._undiagnosed: list[_Chunk | _Dead] = []  # what the next flush diagnoses, in order
        self.diagnosis = Diagnosis(len(loop.info.classes), loop.config.optimizer, loop.config.init)
        self._frozen = frozenset(loop.config.freeze)

    def batch(self, loss: float, elapsed: float) -> bool:
        """Record one batch's loss; take a snapshot if the cadence says so (True if it did)."""
        started = time.perf_counter()
        step = self._loop.step_count
        self._pending.append(loss)
        self._unsent_steps.append(step)
        self._unsent_losses.append(loss)
        self._unsent_lrs.append(self._loop.lr)
        self._sizes.batch()
        if len(self._unsent_steps) >= self.STEPS_FLUSH:
            self.flush_steps(settle=False)
        self.instrument_seconds += time.perf_counter() - started
        if self._loop.epoch_complete or not is_snapshot_step(step, self._loop.config.snapshot_every):
            return False  # the epoch's end takes its own snapshot, after the test evaluation
        self.snapshot(elapsed, epoch_end=False)
        return True

    def flush_steps(self, settle: bool = True) -> None:
        """Send the losses and update ratios of the batches not yet sent, and diagnose them.

        `settle=False` (the cadence's flushes): the ratios are worked out by whoever reads them first (the
        store's writer, making the steps' text), and the diagnosis of these batches waits for the next flush,
        by when they are; every other flush (epoch end, checkpoint, halt) diagnoses everything at once."""
        started = time.perf_counter()
        event = self._steps(settle)
        if event is not None:
            self._emit(event)
        self.instrument_seconds += time.perf_counter() - started

    def _steps(self, settle: bool) -> StepsEvent | None:
        """The steps not yet sent, as an event to emit; the diagnosis of what came before them (of these too if
        `settle`)."""
        event = None
        if self._unsent_steps:
            chunk = (self._unsent_steps, self._unsent_losses, self._unsent_lrs, self._sizes.take())
            self._unsent_steps, self._unsent_losses, self._unsent_lrs = [], [], []
            self._diagnose()
            self._undiagnosed.append(chunk)
            event = StepsEvent(chunk[0], chunk[1], chunk[3])
        if settle:
            self._diagnose()
        return event

    def _diagnose(self) -> None:
        """Diagnose what waits, in the order it came: runs of batches, and snapshots' dL/dW after the batches
        before them, as if each had been diagnosed when it came (only the warnings come a flush later)."""
        waiting, self._undiagnosed = self._undiagnosed, []
        for item in waiting:
            if isinstance(item, _Dead):
                for warning in self.diagnosis.snapshot(item.step, item.grads, item.lr):
                    self._emit(warning)
                continue
            steps, losses, lrs, ratios = item
            # Read whole, frozen layers too, so that their ring goes back to the pool now even if nobody else
            # reads them yet (a store behind). A frozen layer's steps are zero by design: no sign of a learning
            # rate too small.
            kept = {name: row for name, row in dict(ratios).items() if name not in self._frozen}
            for i, (step, loss, lr) in enumerate(zip(steps, losses, lrs, strict=True)):
                for warning in self.diagnosis.batch(step, loss, {name: r[i] for name, r in kept.items()}, lr):
                    self._emit(warning)

    def snapshot(self, elapsed: float, *, epoch_end: bool, refresh: bool = False, clocked: bool = True) -> Snapshot:
        """Take and emit a snapshot; `refresh` marks one taken without training (start, a new probe).

        `clocked`: its cost counts as training time spent on our work (not for a probe shown while paused).
        """
        started = time.perf_counter()
        steps = self._steps(settle=refresh)  # sent just before the snapshot, once all else here is done
        loop = self._loop
        pending = self._pending
        try:
            snap = capture(loop.model, self._layers, self._previous, self.probe, self.reference, seq=self.seq,
                           step=loop.step_count, epoch=loop.epoch, samples_seen=loop.samples_seen,
                           loss=float(np.mean(pending)) if pending else float("nan"), lr=loop.current_lr,
                           elapsed=elapsed, instrument_seconds=self.instrument_seconds, epoch_end=epoch_end,
                           on=self._probe_model, copier=self._copier)
        except BaseException:
            if steps is not None:  # the steps are sent whatever became of the snapshot
                self._emit(steps)
            raise
        self.last_seq = self.seq
        self.seq += 1
        if not refresh and loop.step_count > 0:  # dead filters, diagnosed after the batches before them
            self._undiagnosed.append(_Dead(loop.step_count, {layer.name: layer.grad for layer in snap.layers},
                                           loop.lr))
        if not refresh:  # the next update is measured from here; a refresh leaves the weights untouched
            self._previous = {layer.name: layer.weight for layer in snap.layers}  # never written
            self._pending = []
        # Emitted last: the store's writer wakes for them and takes the GIL, and whatever this thread did after
        # waited for it (the dead-filter check measured 0.24-0.41 ms after the emit, 0.04 ms before).
        if steps is not None:
            self._emit(steps)
        self._emit(snap)
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
            "previous": {k: torch.from_numpy(v.copy()) for k, v in self._previous.items()},
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
        self._previous = {k: v.numpy().copy() for k, v in state["previous"].items()}
        self._pending = list(state["pending"])
        self.reference.start = {k: v.numpy().copy() for k, v in state["start"].items()}
        self.reference.peaks = {k: dict(v) for k, v in state["peaks"].items()}
        self._sizes.reset()
        p = state["probe"]
        self.probe = make_probe(p["pixels"].numpy().copy(), p["index"], p["label"], p["source"])
