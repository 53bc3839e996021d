"""The disk: what a run may take, which runs go when the budget is passed, and what happens when the store
cannot write. Mixed into RunManager, which holds the runs.

The budget (`FILTERSCOPE_MAX_DISK`) is bytes on disk: the database and its WAL, live runs included. The WAL is
counted at its bound, which the budget sets (wal_pages), so that between two looks at the disk it cannot
carry the total past the budget. A run that would not fit in it whatever else went is refused before it
starts, with what would fit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..record.exports_cache import exports_bytes
from ..record.images import images_bytes
from ..streaming.hub import Hub
from ..streaming.protocol import StatusChange
from ..training.events import StateError, Status

if TYPE_CHECKING:
    from ..record.store import Store
    from .run import Run

log = logging.getLogger(__name__)

EVICTED_REASON = "This run was removed to keep the server's disk budget."
# What a snapshot's frame takes besides its arrays (JSON header: scales, measures, peaks), and the losses and
# update ratios of a step (float32 each): measured on `tiny`, rounded up.
HEADER_BYTES = 2_000


PAGE = 4096  # SQLite's page size (the default; schema.py keeps it)
# The largest single commit a run makes: a `classic` checkpoint (model and Adam state) is 1.6 MB.
LARGEST_COMMIT = 2 * 1024 * 1024


def wal_pages(max_disk: int) -> int:
    """WAL pages between checkpoints: SQLite's 1,000 (4 MB) unless the budget is small, then a sixteenth of it
    (at least 64 pages): a WAL that may grow to 4 MB would be a third of a 12 MB budget on its own."""
    return max(64, min(1000, max_disk // 16 // PAGE))


def wal_bound(max_disk: int) -> int:
    """The most the WAL takes at any moment: its pages between checkpoints, and the commit that passes them (the
    WAL is cut back to the first after each checkpoint, journal_size_limit)."""
    return wal_pages(max_disk) * PAGE + LARGEST_COMMIT


def projected_bytes(meta: dict[str, Any], every: int, epochs: int) -> tuple[int, int, int]:
    """(bytes, snapshots, bytes per snapshot) a run of this geometry will store, about, before compression."""
    total = int(meta["total_steps"])
    dense = min(total, 10) + max(0, min(total, 100) // 5 - 2)  # every batch to 10, every 5th to 100
    snapshots = 1 + dense + max(0, total // every - min(total, 100) // every) + epochs
    per = HEADER_BYTES + sum(3 * 2 * layer["out_channels"] * layer["in_channels"] * layer["kernel"][0]
                             * layer["kernel"][1] + layer["fmap"][0] * layer["fmap"][1] * layer["fmap"][2]
                             for layer in meta["layers"])
    steps = total * 4 * (1 + len(meta["layers"]))
    return snapshots * per + steps, snapshots, per


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


class Disk:
    """The disk budget and storage failures (see the module's docstring)."""

    store: Store
    hub: Hub
    data_dir: Path
    _max_disk: int
    _lock: threading.RLock
    _runs: dict[str, Run]
    _loop: asyncio.AbstractEventLoop

    def runs(self) -> list[Run]: raise NotImplementedError
    def _remove(self, run: Run, reason: str) -> None: raise NotImplementedError
    following: Any

    def check_fits(self, meta: dict[str, Any]) -> None:
        """ValueError (a 422) if a run of this meta would store more than the whole budget, with what fits."""
        config = meta["config"]
        every, epochs = int(config["snapshot_every"]), int(config["epochs"])
        need, snapshots, per = projected_bytes(meta, every, epochs)
        if need <= self._max_disk:
            return
        room = self._max_disk - (need - snapshots * per)  # what the snapshots may take
        allowed = room // per - 30 - epochs  # past the dense start and the epoch ends
        fix = (f"raise snapshot_every to at least {-(-int(meta['total_steps']) // allowed)}" if allowed > 0
               else "lower the epochs or the batches per epoch")
        raise ValueError(f"This run would store about {_size(need)} ({snapshots:,} snapshots of {_size(per)}); the "
                         f"disk budget is {_size(self._max_disk)} (FILTERSCOPE_MAX_DISK): {fix}, or raise the budget.")

    def enforce_budget(self) -> None:
        """Past the disk budget (the bytes on disk, live runs included), remove the oldest ended runs, whole,
        that nobody watches; never the newest run, one still training, or one another process writes."""
        with self._lock:
            runs = sorted(self._runs.values(), key=lambda r: r.record.created_at)
            # Everything the data directory holds counts: the run log with its WAL at its bound (it grows between
            # two looks here), watched runs' images and kept exports.
            total = max(self.store.db_bytes(), sum(r.record.size for r in runs)) + wal_bound(self._max_disk) \
                + images_bytes(self.data_dir) + exports_bytes(self.data_dir)
            if total <= self._max_disk:
                return
            for run in runs[:-1]:  # the newest stays: it is what the person is looking at
                if total <= self._max_disk:
                    break
                if not run.status.ended or run.watchers() > 0 or run.producer is not None:
                    continue
                total -= run.record.size + images_bytes(self.data_dir, run.id)
                del self._runs[run.id]
                self.following.forget(run.id)
                log.warning("disk budget %d MB: removed run %s (%.1f MB), the oldest ended one",
                            self._max_disk // 2**20, run.id, run.record.size / 2**20)
                self._remove(run, EVICTED_REASON)


    def _storage_failed(self, sentence: str) -> None:
        """Writes fail: every run this server trains stops where it stands (its last commit is where it resumes
        from) and every page watching is told, by a message that goes out although it cannot be stored."""
        for run in self.runs():
            handle = run.handle
            if handle is None or handle.status.ended:
                continue
            try:
                handle.interrupt()
            except StateError:
                pass
            saved = run.record.snapshots[-1].step if run.record.snapshots else 0
            message = f"{sentence} This run stopped: nothing after step {saved} was saved; resume it once fixed."
            state = run.record.halt(Status.INTERRUPTED, message)
            text = StatusChange(Status.INTERRUPTED.value, message, state["epoch"], saved, state["lr"]).text()
            try:
                self._loop.call_soon_threadsafe(self.hub.publish, run.id, text, False, 0)
            except RuntimeError:
                pass

