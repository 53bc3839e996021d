"""Opening a data directory's store while PyTorch is imported: a server's start does both at once.

A server's start is mostly two things that need nothing of each other: importing the app (PyTorch, 1.5-2 s
here) and opening its store: taking the directory's lock, checking the database (`PRAGMA quick_check` reads
every page: 0.3 s for 200 default runs), adding the shipped run once, and reading every stored run's history
(0.3 s for 200). `filterscope serve` begins the second in a thread of its own (`begin`) as it starts, before it
imports the app; the app's start-up takes what it found (`take`), or does the same itself where nobody began
it (an app built in a test, or for another directory). Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

from .bundle import seed
from .lease import FileLock, server_lock
from .rows import StoredRun
from .store import Store


@dataclass
class Opened:
    """A data directory's store, opened: its lock (held), the store (checked) and every stored run."""

    lock: FileLock
    store: Store
    runs: list[StoredRun]


def open_directory(data_dir: Path, pretrained: Path | None) -> Opened:
    """Take the directory's lock, open and check its store, add the shipped run from `pretrained` once in the
    store's life, and read every run; the lock is released again if any of it fails."""
    # The lock first: only the one server of a directory may check (and repair) its store.
    lock = server_lock(data_dir, what="filterscope serve")
    try:
        store = Store(data_dir / "runs.db", check=True)
        try:
            if pretrained is not None:  # before the runs are read: the shipped start is listed like any run
                seed(store, pretrained, "pretrained")
            return Opened(lock, store, store.load_runs())
        except BaseException:
            store.close()
            raise
    except BaseException:
        lock.release()
        raise


class _Opening:
    """open_directory under way in a thread."""

    def __init__(self, data_dir: Path, pretrained: Path | None) -> None:
        self.key = (data_dir.resolve(), pretrained)
        self.result: Opened | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(data_dir, pretrained), name="store-opening",
                                        daemon=True)
        self._thread.start()

    def _run(self, data_dir: Path, pretrained: Path | None) -> None:
        try:
            self.result = open_directory(data_dir, pretrained)
        except BaseException as exc:  # said by whoever takes it
            self.error = exc

    def wait(self) -> Opened:
        self._thread.join()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


_begun: _Opening | None = None
_lock = threading.Lock()


def begin(data_dir: Path, pretrained: Path | None) -> None:
    """Start opening `data_dir` in the background (once per process)."""
    global _begun
    with _lock:
        if _begun is None:
            _begun = _Opening(data_dir, pretrained)


def take(data_dir: Path, pretrained: Path | None) -> Opened:
    """`data_dir` opened: what `begin` found (waiting for it to finish), or opened now if it began elsewhere or
    not at all (blocking: call it off the event loop)."""
    global _begun
    with _lock:
        begun, _begun = _begun, None
    if begun is not None:
        if begun.key == (data_dir.resolve(), pretrained):
            return begun.wait()
        with contextlib.suppress(BaseException):  # begun for another directory: let it go
            opened = begun.wait()
            opened.store.close()
            opened.lock.release()
    return open_directory(data_dir, pretrained)
