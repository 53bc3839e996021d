"""Exports of ended runs, made once and kept on disk: `exports/<run>/<key>-<name>` in the data directory.

An ended run's frames no longer change, so its npz, GIFs and filter trajectories are the same bytes every time:
each is made once (the GIF of a 1,251-snapshot run was 16 s of CPU) and then served as a file. The key is the
run's last snapshot seq; a resumed run moves it on (snapshot numbers are never reused), so its exports are
made afresh and the old ones removed. Each is made in a scratch file and renamed into place, so that a reader
never sees half of one. The cache holds at most `max_bytes` (the least recently served go first); a deleted
run takes its exports with it (remove_exports, which the run manager calls), and exports of runs the server
no longer holds are swept whenever one is made (prune).

make_export is what an export process runs (app/background.py): it reads the frames it needs from the store
itself, one at a time, writes the export to a scratch file and keeps it, so the server only sends a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from .export import write_gif, write_npz
from .reads import Reads
from .trajectory import trajectory

log = logging.getLogger(__name__)

EXPORTS = "exports"
SCRATCH = ".scratch"  # exports being made, and those of live runs: removed once sent (or at start)
SAFE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _safe(name: str) -> str:
    """`name` as one path component: as is when plain, else a digest (never a path, never too long)."""
    return name if SAFE.fullmatch(name) and name not in (".", "..") else hashlib.sha256(name.encode()).hexdigest()


def exports_dir(data_dir: Path) -> Path:
    """Where a data directory's exports are kept."""
    return data_dir / EXPORTS


def remove_exports(data_dir: Path, run_id: str) -> None:
    """Forget every export of run `run_id` (call it when the run is deleted or evicted)."""
    shutil.rmtree(exports_dir(data_dir) / _safe(run_id), ignore_errors=True)


def exports_bytes(data_dir: Path) -> int:
    """Bytes the data directory's exports take on disk."""
    return sum(size for _, _, size in _files(exports_dir(data_dir)))


def _files(root: Path) -> list[tuple[Path, float, int]]:
    """Every kept export under `root`: (path, last served, bytes); not scratch files, not ones being written."""
    found = []
    for path in root.glob("*/*"):
        if path.parent.name == SCRATCH or path.name.startswith("."):
            continue
        with contextlib.suppress(OSError):  # removed meanwhile
            st = path.stat()
            found.append((path, st.st_mtime, st.st_size))
    return found


class ExportCache:
    """The kept exports of one data directory. Any thread or process may use one: a file only ever appears by a
    rename into place and goes by removal, and one open is read whole whatever happens to its name."""

    def __init__(self, data_dir: Path, max_bytes: int) -> None:
        self.root = exports_dir(data_dir)
        self.max_bytes = max_bytes
        self.scratch = self.root / SCRATCH
        self._lock = threading.Lock()  # keeping, evicting and pruning: one at a time in this process

    def open(self, run_id: str, key: int, name: str) -> BinaryIO | None:
        """The kept file of export `name` of run `run_id` at `key`, open (it counts as just served), or None.
        Open, it can be sent whole even if it is evicted meanwhile."""
        path = self._path(run_id, key, name)
        try:
            f = open(path, "rb")  # the caller closes it once sent
        except OSError:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return f

    def scratch_dir(self) -> Path:
        """Where exports are made before they are kept (or sent and removed)."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        return self.scratch

    def keep(self, made: Path, run_id: str, key: int, name: str) -> Path | None:
        """Move `made` (a scratch file) into the cache as export `name` of run `run_id` at `key`; its new path, or
        None when it alone is larger than the cache (it stays where it is). Exports of the run at other keys
        (made before it was resumed) are removed, then the least recently served while over the size."""
        size = made.stat().st_size
        if size > self.max_bytes:
            return None
        path = self._path(run_id, key, name)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            for old in path.parent.iterdir():
                if not old.name.startswith(f"{key}-"):
                    old.unlink(missing_ok=True)
            os.replace(made, path)
            self._evict(keep=path)
        return path

    def prune(self, keep: set[str]) -> None:
        """Remove the exports of every run not in `keep` (the runs the server holds)."""
        wanted = {_safe(run_id) for run_id in keep} | {SCRATCH}
        with self._lock:
            if self.root.is_dir():
                for entry in self.root.iterdir():
                    if entry.name not in wanted:
                        shutil.rmtree(entry, ignore_errors=True)

    def clear_scratch(self) -> None:
        """Remove what a server that stopped mid-export left behind (at start)."""
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _path(self, run_id: str, key: int, name: str) -> Path:
        return self.root / _safe(run_id) / f"{key}-{_safe(name)}"

    def _evict(self, keep: Path) -> None:
        """Remove the least recently served exports until the cache fits `max_bytes` (`keep` stays)."""
        files = sorted((f for f in _files(self.root) if f[0] != keep), key=lambda f: f[1])
        total = sum(size for _, _, size in files) + keep.stat().st_size
        for path, _, size in files:
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            log.info("export %s/%s removed to keep exports within %d MB", path.parent.name, path.name,
                     self.max_bytes // 2**20)


@dataclass(frozen=True)
class Export:
    """One export of a run: weights.npz, a layer's filters.gif, or one filter's trajectory."""

    kind: Literal["npz", "gif", "trajectory"]
    layer: str = ""
    index: int = 0

    @property
    def name(self) -> str:
        """Its file name in the cache."""
        return {"npz": "weights.npz", "gif": f"filters-{self.layer}.gif",
                "trajectory": f"filter-{self.layer}-{self.index}"}[self.kind]


class _Frames(Reads):
    """The store's reads alone (no writer): what an export process needs of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__()


_stores: dict[Path, _Frames] = {}  # an export process's reader of each store, kept between exports


def make_export(db: Path, run_id: str, seqs: list[int], what: Export, data_dir: Path, max_bytes: int,
                key: int | None) -> tuple[Path, bool]:
    """Make `what` from the run's frames `seqs` (read one at a time) into a scratch file, and keep it in the
    cache at `key` (None: not kept, a live run's). Its path, and whether it was kept (else the caller removes
    it once sent). Raises NothingToExport, NoSuchFilter or Damaged as the export cannot be made."""
    store = _stores.get(db) or _stores.setdefault(db, _Frames(db))
    cache = ExportCache(data_dir, max_bytes)

    def frames() -> Iterator[tuple[int, bytes]]:
        for seq in seqs:
            found = store.frame(run_id, seq)
            if found is not None:  # removed meanwhile (the run was resumed, or deleted)
                yield seq, found[0]

    fd, name = tempfile.mkstemp(dir=cache.scratch_dir(), prefix="export-")
    made = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            if what.kind == "npz":
                write_npz(frames(), out, cache.scratch_dir())
            elif what.kind == "gif":
                write_gif(frames(), what.layer, out)
            else:
                out.write(trajectory(frames(), what.layer, what.index, run_id))  # one filter: a few MB at most
    except BaseException:
        made.unlink(missing_ok=True)
        raise
    kept = None if key is None else cache.keep(made, run_id, key, what.name)
    return (made, False) if kept is None else (kept, True)
