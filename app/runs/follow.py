"""Following the runs other processes append to the run log, so that the server lists and streams them.

A thread looks at the store ten times a second. SQLite's `data_version` says, for the price of one
pragma, whether anyone has committed since the last look; only then does it ask which runs are new (a
`filterscope train` or a person's script just began one) and read what each followed run gained
(Store.tail), which its record publishes to the run's pages exactly as if this server had appended it. A
followed run whose producer is gone (its lease free) without saying that it ended is marked interrupted.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from ..record.lease import run_lease
from ..record.schema import connect
from ..record.writer import deleted
from ..training.events import Status

if TYPE_CHECKING:
    from .manager import RunManager
    from .run import Run

log = logging.getLogger(__name__)


class Following:
    """The followed runs and the thread that follows them."""

    def __init__(self, manager: RunManager, seconds: float) -> None:
        self._manager = manager
        self._seconds = seconds  # between looks: what a page waits at most, past the producer's own commit
        self._runs: dict[str, Run] = {}
        self._gone: set[str] = set()  # deleted here: not new when the store still lists them for a moment
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def add(self, run: Run) -> None:
        with self._lock:
            self._runs[run.id] = run

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)
            self._gone.add(run_id)

    def _loop(self) -> None:
        store = self._manager.store
        conn = connect(store.path)
        version = None
        try:
            while not self._stop.wait(self._seconds):
                try:
                    if not store.path.exists() and store.writer.failure is None:
                        store.writer.fail(deleted(str(store.path.parent)))
                    now = store.data_version(conn)
                    if now != version:
                        version = now
                        self._look()
                    self._check_producers()
                except Exception:  # one bad look must not end following
                    log.exception("following the run log failed")
        finally:
            conn.close()

    def _look(self) -> None:
        """Adopt runs other processes added, then read on in every followed run."""
        manager = self._manager
        with self._lock:
            gone = set(self._gone)
        new = manager.store.run_ids() - manager.known() - gone
        if new:
            for stored in manager.store.load_runs(new):
                run = manager.adopt(stored)
                log.info("run %s appears, %s", run.id,
                         f"trained by process {run.producer.get('pid')}" if run.producer else run.status.value)
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            self._read(run)

    def _read(self, run: Run) -> None:
        tail = self._manager.store.tail(run.id, *run.record.marks())
        if tail is None:  # removed by another process
            return
        run.record.follow(tail)
        if run.status.ended:
            with self._lock:
                self._runs.pop(run.id, None)
            run.producer = None

    def _check_producers(self) -> None:
        """A followed run whose lease is free lost its producer: what it committed is read, then it is
        `interrupted` unless it said it ended."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            lease = run_lease(self._manager.data_dir, run.id)
            if not lease.is_free():
                continue
            self._read(run)
            with self._lock:
                self._runs.pop(run.id, None)
            pid = (run.producer or {}).get("pid", "?")
            run.producer = None
            if not run.status.ended and lease.acquire(what="filterscope serve"):
                try:
                    run.record.set_status(Status.INTERRUPTED, f"The process that trained this run ({pid}) ended "
                                          "before the run did; what it recorded is kept.")
                    self._manager.store.flush()
                finally:
                    lease.release()
