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
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Encoding, compressing and writing yield to training on a shared core (as uploads do: background.py).
WRITER_NICENESS = 5
BATCH = 256  # writes per transaction at most: one commit for whatever piled up, without starving readers

Write = Callable[[sqlite3.Connection], object]
Then = Callable[[], None]


class StorageFailed(Exception):
    """The store cannot write: the disk is full, the directory is read-only or gone. The message says which,
    in a sentence a person can act on (the API answers it with 507)."""


def deleted(where: str) -> str:
    """The sentence for a data directory removed while the server ran."""
    return (f"The data directory {where} was deleted while the server ran: nothing more can be saved; restart the "
            "server to start a new one.")


def explain(exc: BaseException, where: str) -> str:
    """A failed commit in one sentence: what is wrong with the data directory `where`, and what to do."""
    text = str(exc).lower()
    if where and not os.path.isdir(where):
        return deleted(where)
    if "full" in text or getattr(exc, "errno", None) == 28:
        return f"The disk holding {where} is full: nothing more is saved; free some space and restart the server."
    if "readonly" in text or "read-only" in text or getattr(exc, "errno", None) in (13, 30):
        return f"The data directory {where} is read-only: nothing is saved; make it writable and restart the server."
    return f"The data directory {where} cannot be written ({exc}): nothing more is saved; restart the server."


class Writer:
    """A queue of writes and the thread that commits them on `conn`."""

    def __init__(self, conn: sqlite3.Connection, where: str = "") -> None:
        self._conn = conn
        self._where = where
        # Why writes fail, in a sentence; None while they succeed. It stays until the server restarts: a full disk
        # lets some small writes through, and a store that half-works would save some moments and lose others.
        self.failure: str | None = None
        self.vacuum_due = False  # set by a delete: after its commit, freed pages go back to the disk
        self.rolled_back: Callable[[], None] | None = None  # told when a transaction did not commit
        self.on_failure: Callable[[str], None] | None = None  # called (writer thread) when writes start failing
        self._queue: queue.Queue[tuple[Write, Then | None] | None] = queue.Queue()
        self.closed = False
        self._thread = threading.Thread(target=self._loop, name="store-writer", daemon=True)
        self._thread.start()

    def fail(self, sentence: str) -> None:
        """Say that writing fails (from here or from a check outside, e.g. the directory deleted)."""
        if self.failure is None:
            self.failure = sentence
            log.error("%s", sentence)  # one line, not a traceback per write
            if self.on_failure is not None:
                try:
                    self.on_failure(sentence)
                except Exception:
                    log.exception("telling of a storage failure failed")

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
        deadline = time.monotonic() + timeout
        while not done.wait(0.02):  # a write that fails never commits: say so instead of waiting it out
            if self.failure is not None or time.monotonic() > deadline:
                return False
        return True

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
        if self.failure is not None:  # nothing more is saved (the sentence said so): nor said to be
            log.debug("store failed: %d writes dropped", len(batch))
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            for write, _ in batch:
                write(conn)
            conn.execute("COMMIT")
        except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as exc:  # the disk, not the code
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            log.debug("store write failed; %d writes rolled back: %s", len(batch), exc)
            self._rolled_back()
            self.fail(explain(exc, self._where))
            return
        except Exception:
            log.exception("store write failed; %d writes rolled back", len(batch))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._rolled_back()
            return
        for _, then in batch:
            if then is not None:
                try:
                    then()
                except Exception:
                    log.exception("after-commit callback failed")
        if self.vacuum_due:
            self._vacuum()

    def _rolled_back(self) -> None:
        if self.rolled_back is not None:
            try:
                self.rolled_back()
            except Exception:
                log.exception("after-rollback callback failed")

    def _vacuum(self) -> None:
        """Give the pages runs were deleted from back to the disk, and cut the WAL back (after a delete)."""
        self.vacuum_due = False
        try:  # executescript steps the pragma to its end; execute() would free one page
            self._conn.executescript("PRAGMA incremental_vacuum;")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.debug("vacuum after a delete did not finish: %s", exc)
