"""`filterscope train`: a built-in preset trained in this process, appended to a data directory's run log.

No server is needed: the run is written where a server would keep it, under this process's lease, and a
`filterscope serve` on the same data directory (already running or started later) lists it and streams it
live to its pages (follow.py). The server cannot pause it (that is this process's Ctrl+C: the run ends
`interrupted`, and the page can resume it, since its checkpoints are a preset's like any other).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
from pathlib import Path
from types import FrameType

from ..record.lease import run_lease
from ..record.record import RunRecord, new_stored_run
from ..record.store import Store, token_hash
from ..training.config import TrainConfig
from ..training.events import StateError, Status
from .handle import PROCESS
from .local import LocalRun

log = logging.getLogger(__name__)

WHAT = "filterscope train"


def train(config: TrainConfig, data_dir: Path, threads: int = 0, say: bool = True) -> tuple[str, str, Status]:
    """Train `config` to the end (or until SIGINT/SIGTERM) into `data_dir`; returns (run id, control token,
    final status). ValueError with a sentence if the config cannot train."""
    if config.init_from is not None:
        raise ValueError("init_from: a run that starts from another run's weights is started by a server on the "
                         "data directory (POST /api/runs, or 'fine-tune from here' on the page), which holds the "
                         "source's record; filterscope train starts from the seed's random weights.")
    handle = LocalRun(config, threads=threads)
    store = Store(data_dir / "runs.db")
    run_id, token = "r" + secrets.token_hex(4), secrets.token_urlsafe(24)
    lease = run_lease(data_dir, run_id)
    lease.acquire(what=WHAT)  # a new id: nobody else can hold it
    try:
        meta = {**handle.meta(), "kind": "process", "capabilities": PROCESS.as_dict(),
                "producer": {"pid": os.getpid(), "what": WHAT}}
        stored = new_stored_run(run_id, token_hash(token), meta, config.lr)
        store.add_run(stored)
        record = RunRecord(stored, store)
        handle.listen(record.on_event)
        if say:
            print(f"filterscope: training run {run_id} in process {os.getpid()} into {data_dir}; a server on "  # noqa: T201
                  f"this data directory shows it live at /?run={run_id} (control token: {token}). Ctrl+C "
                  "interrupts it (resumable).", flush=True)

        def interrupt(_sig: int, _frame: FrameType | None) -> None:
            try:
                handle.interrupt()
            except StateError:  # it has ended already
                pass

        previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            handle.start()
            while not handle.join(0.5):
                pass
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
        store.flush()
        status = handle.status
    finally:
        store.close()
        lease.release()
    if say:
        print(f"filterscope: run {run_id} {status.value}", flush=True)  # noqa: T201
    return run_id, token, status
