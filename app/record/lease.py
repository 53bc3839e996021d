"""One writer per run, and one server per data directory, enforced by the operating system's file locks.

Every process that appends to a run holds that run's lease: an exclusive `flock` on `leases/<run id>`
beside the database. The kernel releases it when the process ends, however it ends (a clean exit, a
crash, SIGKILL), so "nobody holds the lease" is exactly "nobody is writing this run": a server that finds
a run unfinished with its lease free marks it interrupted; with its lease held, another process is
training it, and the server follows it instead (follow.py). A server also holds `server.lock` for the
whole data directory, so a second `filterscope serve` there refuses to start, naming the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any


class Busy(Exception):
    """Another live process holds the lock; the message names it."""


class FileLock:
    """An exclusive, non-blocking flock on one file, holding who took it (pid, host, what)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, **about: Any) -> bool:
        """Take the lock (False if another process, or another holder in this one, has it) and say who has."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), **about}).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def holder(self) -> dict[str, Any]:
        """What the current holder wrote (pid, host, ...); {} if unreadable."""
        try:
            return dict(json.loads(self.path.read_text() or "{}"))
        except (OSError, ValueError):
            return {}

    def is_free(self) -> bool:
        """True if nobody holds the lock now (taken and given back at once to find out)."""
        if self._fd is not None:
            return False
        if not self.path.exists():
            return True
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True


def server_lock(data_dir: Path, **about: Any) -> FileLock:
    """The data directory's server lock, taken; Busy (naming the holder) if another server has it."""
    lock = FileLock(data_dir / "server.lock")
    if not lock.acquire(**about):
        who = lock.holder()
        what = f" ({who['what']})" if who.get("what") else ""
        raise Busy(f"The data directory {data_dir} is in use by process {who.get('pid', '?')}{what}; stop it, or "
                   f"serve another directory (--data-dir or FILTERSCOPE_DATA_DIR).")
    return lock


def run_lease(data_dir: Path, run_id: str) -> FileLock:
    """Run `run_id`'s lease (not taken yet)."""
    return FileLock(data_dir / "leases" / run_id)
