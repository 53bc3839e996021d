"""What a run's bytes on disk are made of: each table's share, and within the snapshot frames each part's
(W, dW, ΔW and the pre-activation maps per layer, the JSON header), each compressed alone as the store
compresses a whole frame (zlib level 1), so what a change of quantisation or encoding would save can be read
off. A frame stored as a residual (app/record/framepack.py) is measured as stored: its W parts are the residuals.

    .venv/bin/python -m bench.bench_bytes [--source PATH/runs.db] [--config JSON]

Without --source it trains the default run (`filterscope train`, one thread) into a fresh directory.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import struct
import zlib
from collections import Counter
from pathlib import Path

from bench.common import trained
from filterscope.record import framepack

LEVEL = 1  # as the store's writer compresses a frame (store.add_snapshot)
GOAL_MB = 3.0  # issue 26: a default run at most 3 MB on disk


def frame_parts(frame: bytes) -> Counter[str]:
    """Bytes of each part of one (inflated) frame, each compressed alone."""
    (length,) = struct.unpack_from("<I", frame, 0)
    header = json.loads(frame[4:4 + length])
    payload = frame[4 + length:]
    parts: Counter[str] = Counter({"header (JSON)": len(zlib.compress(frame[:4 + length], LEVEL))})
    spans = []
    for layer in header["layers"]:
        for key in ("weight", "grad", "update", "preact"):
            meta = layer.get(key)
            if isinstance(meta, dict) and "offset" in meta:
                spans.append((meta["offset"], f"{layer['name']} {key}"))
    probe = header["probe"]["pixels"]
    spans.append((probe["offset"], "probe pixels"))
    spans.sort()
    for (start, name), (end, _) in zip(spans, [*spans[1:], (len(payload), "")], strict=True):
        parts[name] += len(zlib.compress(payload[start:end], LEVEL))
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="a runs.db whose first run is measured")
    parser.add_argument("--config", default="{}", help="the run config when training one (JSON)")
    args = parser.parse_args()
    db = args.source or trained(args.config)
    with sqlite3.connect(db) as conn:
        [(run_id,)] = conn.execute("SELECT id FROM runs ORDER BY created_at LIMIT 1").fetchall()
        tables = {
            "snapshot frames": conn.execute("SELECT sum(length(frame)), count(*) FROM snapshots WHERE run_id = ?",
                                            (run_id,)).fetchone(),
            "checkpoints": conn.execute("SELECT sum(length(data)), count(*) FROM checkpoints WHERE run_id = ?",
                                        (run_id,)).fetchone(),
            "steps (losses, ratios)": conn.execute(
                "SELECT sum(length(losses) + coalesce(length(ratios), 0)), count(*) FROM steps WHERE run_id = ?",
                (run_id,)).fetchone(),
            "analyses": conn.execute("SELECT sum(length(data)), count(*) FROM analyses WHERE run_id = ?",
                                     (run_id,)).fetchone(),
            "run row (meta, state, epochs)": conn.execute(
                "SELECT length(meta) + length(state) + length(epochs), 1 FROM runs WHERE id = ?", (run_id,)).fetchone(),
        }
        parts: Counter[str] = Counter()
        whole = 0
        for (blob,) in conn.execute("SELECT frame FROM snapshots WHERE run_id = ?", (run_id,)):
            parts += frame_parts(zlib.decompress(blob[framepack.zlib_start(blob):]))
            whole += framepack.reference(blob) is None
    total = sum(size or 0 for size, _ in tables.values())
    print(f"run {run_id}: {total / 1e6:.2f} MB in the store's rows (goal {GOAL_MB:g} MB)")  # noqa: T201
    for name, (size, count) in tables.items():
        print(f"  {name:32s} {(size or 0) / 1e6:7.3f} MB  {100 * (size or 0) / total:5.1f} %  ({count} rows)")  # noqa: T201
    frames = sum(parts.values())
    print(f"the frames' parts, each compressed alone (together {frames / 1e6:.3f} MB; {whole} frames kept whole, "  # noqa: T201
          f"{tables['snapshot frames'][1] - whole} with W as a residual):")
    for name, size in parts.most_common():
        print(f"  {name:32s} {size / 1e6:7.3f} MB  {100 * size / frames:5.1f} %")  # noqa: T201


if __name__ == "__main__":
    main()
