"""The run log's tables, and how every process opens the one database file.

One SQLite file in WAL mode holds every run: the server and any producer process (`filterscope train`, a
person's script) open it the same way, each appending only the runs whose lease it holds (lease.py).
WAL lets readers read while one writer at a time commits; `timeout` makes a writer wait its turn instead
of failing while another process commits.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from .writer import StorageFailed

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    token_hash TEXT NOT NULL,
    meta TEXT NOT NULL,            -- config, layers, classes, steps_per_epoch, total_steps (JSON)
    state TEXT NOT NULL,           -- status, message, epoch, step, samples_seen, elapsed, ... (JSON)
    epochs TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL,
    first INTEGER NOT NULL,        -- the step of losses[0]
    losses BLOB NOT NULL,          -- float32, NaN for a non-finite loss
    ratios BLOB,                   -- float32 (layers, len(losses)): update ratios, conv layers in meta order
    PRIMARY KEY (run_id, first)
);
CREATE TABLE IF NOT EXISTS snapshots (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    epoch_end INTEGER NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,         -- length(frame), kept so that start-up need not read every blob
    frame BLOB NOT NULL,           -- zlib of the frame as sent
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    seq INTEGER NOT NULL,          -- the latest snapshot before it
    epoch INTEGER NOT NULL,
    anchor INTEGER NOT NULL,       -- kept for good; otherwise replaced by the run's next checkpoint
    resumable INTEGER NOT NULL,    -- holds the optimizer's state: training can go on from it
    size INTEGER NOT NULL,
    data BLOB NOT NULL,            -- torch.save of the state
    PRIMARY KEY (run_id, step, seq)
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL             -- a status or error message as sent (JSON)
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id);
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    body TEXT NOT NULL             -- {"field", "values", "base", "runs"}: one run per value, in order (JSON)
);
CREATE TABLE IF NOT EXISTS seeded (
    name TEXT PRIMARY KEY,         -- a run shipped with filterscope (record/bundle.py), added once, never again
    run_id TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS analyses (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,          -- the snapshot whose weights it analysed (step 0 and every epoch end)
    step INTEGER NOT NULL,
    seconds REAL NOT NULL,         -- training-thread time it cost
    size INTEGER NOT NULL,
    data BLOB NOT NULL,            -- zlib of its JSON: every conv layer's top patches and health
    PRIMARY KEY (run_id, seq)
);
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection as every part of filterscope uses one: autocommit (transactions explicit), WAL."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    # A new store gives freed pages back to the file system (Store.delete_run), so deleted or evicted runs
    # shrink the file, not only leave room inside it. It must be said before WAL and the first table; on an
    # older store it does nothing until a VACUUM (open_store does one where it is quick).
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL: a commit survives the process being killed (it is in the OS's cache); only a power cut may
    # lose the last few, and the database stays consistent either way.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=OFF")
    # The WAL is cut back to this after each checkpoint (SQLite runs one every 1,000 pages): a long-running
    # server's WAL stays a few MB instead of keeping its largest size for good (25 MB seen).
    conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
    return conn


WAL_LIMIT = 4 * 1024 * 1024


def migrate(conn: sqlite3.Connection) -> None:
    """Create what is missing and bring an older store's tables up to date (safe to run from any process)."""
    conn.executescript(SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(steps)")}
    if "ratios" not in columns:  # a store written before update ratios were kept
        conn.execute("ALTER TABLE steps ADD COLUMN ratios BLOB")


def open_store(path: Path) -> sqlite3.Connection:
    """The writer's connection to the store at `path`, checked first (SQLite's quick_check).

    A damaged store (truncated, a bad header, damaged pages) is moved aside, with its WAL, to
    `runs.db.damaged-<time>`, and an empty one takes its place: the server starts, and says in one line what it
    found and where the old file is (`sqlite3 <file> .recover` may get runs back). A data directory that cannot
    be written is StorageFailed, naming it.
    """
    where = path.parent
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageFailed(f"The data directory {where} cannot be made ({exc.strerror}); choose another with "
                            "--data-dir or FILTERSCOPE_DATA_DIR.") from None
    if not os.access(where, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise StorageFailed(f"The data directory {where} is read-only: filterscope keeps its runs there. Make it "
                            "writable, or choose another with --data-dir or FILTERSCOPE_DATA_DIR.")
    if path.exists() and path.stat().st_size == 0 and any((where / "leases").glob("*")):
        log.warning("%s is empty (0 bytes) although runs were kept in %s: it was emptied outside filterscope; "
                    "the server starts with no runs", path, where)
    try:
        conn = connect(path)
        found = str(conn.execute("PRAGMA quick_check").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        found = str(exc)
        conn = None
    if found == "ok" and conn is not None:
        migrate(conn)
        _give_back_space(conn, path)
        return conn
    if conn is not None:
        conn.close()
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            part.rename(aside.with_name(aside.name + suffix))
    log.error("The run store %s is damaged (%s); it was moved to %s and the server starts with an empty store "
              "(`sqlite3 %s .recover` may get runs back).", path, found.splitlines()[0][:200], aside, aside)
    conn = connect(path)
    migrate(conn)
    return conn


# An older store (auto_vacuum off) is rebuilt once so that deleting runs frees disk; past this it would
# keep the start waiting too long (VACUUM copies the file: ~1 s per 100 MB here), so it is left as it is.
VACUUM_AT_START_LIMIT = 256 * 1024 * 1024


def _give_back_space(conn: sqlite3.Connection, path: Path) -> None:
    if int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2:  # incremental already
        return
    size = path.stat().st_size
    if size > VACUUM_AT_START_LIMIT:
        log.warning("%s (%d MB) predates incremental vacuum: deleted runs leave room inside it but do not shrink "
                    "it; `sqlite3 %s 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM'` with the server stopped fixes that",
                    path, size // 2**20, path)
        return
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("VACUUM")
    log.info("%s rebuilt for incremental vacuum (%d KB)", path, size // 1024)
