"""A run as one file: every row the run log keeps of one run, in a SQLite file of the same schema.

What a run is lives in six tables (its meta and state, losses, frames, checkpoints, events, analyses), so a
copy of those rows is the whole run: a server that adds them lists, streams, inspects, replays and fine-tunes
from it as from a run it trained itself. filterscope ships one such file, a run pretrained on Fashion-MNIST
(scripts/pretrain.py makes it), so that a fresh install has a start to fine-tune from (training/transfer.py).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .schema import SCHEMA

if TYPE_CHECKING:
    from .store import Store

# Each table's rows of one run: the column naming the run, and the columns copied (events' own counter is not:
# the importing store numbers them after its own).
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "runs": ("id", ("id", "created_at", "token_hash", "meta", "state", "epochs")),
    "steps": ("run_id", ("run_id", "first", "losses", "ratios")),
    "snapshots": ("run_id", ("run_id", "seq", "step", "epoch", "epoch_end", "etag", "size", "frame")),
    "checkpoints": ("run_id", ("run_id", "step", "seq", "epoch", "anchor", "resumable", "size", "data")),
    "events": ("run_id", ("run_id", "body")),
    "analyses": ("run_id", ("run_id", "seq", "step", "seconds", "size", "data")),
}


@dataclass(frozen=True)
class Bundle:
    """One run's rows, read from a bundle file: table -> (columns, rows)."""

    run_id: str
    rows: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]]

    def insert(self, conn: sqlite3.Connection) -> None:
        """Add the run to a run log (inside the caller's transaction); IntegrityError if its id is taken."""
        for table, (columns, rows) in self.rows.items():
            marks = ", ".join("?" * len(columns))
            conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)  # noqa: S608


def export_run(db: Path, run_id: str, out: Path) -> None:
    """Write run `run_id` of the run log `db` to a new bundle file `out` (replaced if it exists)."""
    out.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    dst = sqlite3.connect(out)
    try:
        dst.executescript(SCHEMA)
        for table, (key, columns) in TABLES.items():
            names = ", ".join(columns)
            rows = src.execute(f"SELECT {names} FROM {table} WHERE {key} = ?", (run_id,)).fetchall()  # noqa: S608
            if table == "runs" and not rows:
                raise KeyError(f"{db} has no run {run_id}")
            dst.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})", rows)  # noqa: S608
        dst.commit()
        dst.execute("VACUUM")  # the smallest file: it ships with the package
    finally:
        src.close()
        dst.close()


def read_bundle(path: Path) -> Bundle:
    """Every row of the one run a bundle file holds. ValueError with a sentence if it holds none or several."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM runs")]
        if len(ids) != 1:
            raise ValueError(f"{path} holds {len(ids)} runs; a bundle holds exactly one.")
        rows = {}
        for table, (key, columns) in TABLES.items():
            rows[table] = (columns, conn.execute(
                f"SELECT {', '.join(columns)} FROM {table} WHERE {key} = ?", (ids[0],)).fetchall())  # noqa: S608
        return Bundle(ids[0], rows)
    finally:
        conn.close()


def seed(store: Store, path: Path, name: str) -> str | None:
    """Add the bundle's run to `store` once in the store's life (blocking; the server's start, before its runs
    are read): the run's id when it was added now, None when it was added before (and perhaps deleted since,
    which stays so) or its id is taken."""
    bundle = read_bundle(path)
    added: list[str] = []

    def write(c: sqlite3.Connection) -> None:
        if c.execute("SELECT 1 FROM seeded WHERE name = ?", (name,)).fetchone() is not None:
            return
        c.execute("INSERT INTO seeded (name, run_id, at) VALUES (?, ?, ?)", (name, bundle.run_id, time.time()))
        if c.execute("SELECT 1 FROM runs WHERE id = ?", (bundle.run_id,)).fetchone() is None:
            bundle.insert(c)
            # the run answer's `shipped`: the page says where the run came from, not "another browser"
            c.execute("UPDATE runs SET meta = json_set(meta, '$.shipped', ?) WHERE id = ?", (name, bundle.run_id))
            added.append(bundle.run_id)

    store.submit(write)
    store.flush()
    return added[0] if added else None
