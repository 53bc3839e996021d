"""The one thread that writes a process's share of the run log: writes queue up, commit in batches.

The training thread only enqueues, and the event loop never touches the disk. Whatever has piled up
commits in one transaction; a write's `then` callback runs after its transaction commits, which is how a
frame reaches the socket only once it is safe on disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# Encoding, compressing and writing yield to training on a shared core (as uploads do: background.py).
WRITER_NICENESS = 5
BATCH = 256  # writes per transaction at most: one commit for whatever piled up, without starving readers

Write = Callable[[sqlite3.Connection], object]
Then = Callable[[], None]


class Writer:
    """A queue of writes and the thread that commits them on `conn`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._queue: queue.Queue[tuple[Write, Then | None] | None] = queue.Queue()
        self.closed = False
        self._thread = threading.Thread(target=self._loop, name="store-writer", daemon=True)
        self._thread.start()

    def submit(self, write: Write, then: Then | None = None) -> None:
        """Run `write` in the next transaction; call `then` (on the writer thread) once committed."""
        if self.closed:
            log.warning("store closed: a write was dropped")
            return
        self._queue.put((write, then))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every write queued so far is committed; True if it was in time."""
        done = threading.Event()
        self.submit(lambda _c: None, done.set)
        return done.wait(timeout)

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        if self.closed:
            return
        self.closed = True
        self._queue.put(None)
        self._thread.join(60)

    def _loop(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICENESS)
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self._commit(batch)

    def _commit(self, batch: list[tuple[Write, Then | None]]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for write, _ in batch:
                write(conn)
            conn.execute("COMMIT")
        except Exception:
            log.exception("store write failed; %d writes rolled back", len(batch))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return
        for _, then in batch:
            if then is not None:
                try:
                    then()
                except Exception:
                    log.exception("after-commit callback failed")
