"""What the filter analysis costs: its share of a default run's training time, the time per analysis, the bytes
it stores per run, and how much an epoch's test pass slows down when hooks watch it.

Each round trains a default run (or `--model`'s) through the engine into a run record and SQLite store, as the
server does, and reads the engine's own measure (`analysis_seconds`: the training thread's time in the hooks
and in finishing, plus the whole of step 0's test pass, which is made for the analysis alone). Then it times
the test pass with and without the hooks on the finished model, side by side, as a check on that measure.

    .venv/bin/python -m bench.bench_analysis [--rounds 5] [--model tiny]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_training import in_thread
from filterscope.record.record import RunRecord, new_stored_run
from filterscope.record.store import Store
from filterscope.runs.local import log_event
from filterscope.training.analysis import AnalysisEvent
from filterscope.training.config import TrainConfig
from filterscope.training.engine import Engine, Event


def one_run(cfg: TrainConfig, store: Store) -> dict[str, Any]:
    """Train `cfg` into a record; the analysis share, per-analysis seconds and the bytes stored."""
    record = RunRecord(new_stored_run(f"b{time.monotonic_ns()}", "-", {"config": cfg.model_dump()}, cfg.lr), store)
    store.add_run(new_stored_run(record.id, "-", record.meta, cfg.lr))
    analyses: list[AnalysisEvent] = []

    def listen(event: Event) -> None:
        if isinstance(event, AnalysisEvent):
            analyses.append(event)
        record.on_event(log_event(event))

    engine = Engine(cfg, emit=listen)
    engine.start()
    engine.join()
    store.flush()
    with sqlite3.connect(store.path) as conn:
        (stored,) = conn.execute("SELECT coalesce(sum(size), 0) FROM analyses WHERE run_id = ?",
                                 (record.id,)).fetchone()
    watched, plain = hooks_overhead(engine)
    return {"share": engine.analyst.seconds / engine.elapsed, "elapsed": engine.elapsed,
            "step0": analyses[0].seconds, "epoch_ends": [a.seconds for a in analyses[1:]], "bytes": int(stored),
            "count": len(analyses), "watched": watched, "plain": plain}


def hooks_overhead(engine: Engine, repeats: int = 3) -> tuple[float, float]:
    """Median seconds of the test pass with the analysis's hooks and without, alternating, on the training thread."""
    loop, analyst = engine.loop, engine.analyst

    def timed() -> float:
        watched, plain = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            loop.evaluate()
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            with analyst.collecting() as observe:
                loop.evaluate(observe)
            watched.append(time.perf_counter() - started)
        out.append((statistics.median(watched), statistics.median(plain)))
        return 0.0

    out: list[tuple[float, float]] = []
    in_thread(timed)
    return out[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="tiny", choices=["tiny", "lenet5", "classic"])
    args = parser.parse_args()
    cfg = TrainConfig(model=args.model)
    with tempfile.TemporaryDirectory(prefix="filterscope-bench-") as tmp:
        store = Store(Path(tmp) / "runs.db")
        runs = []
        for i in range(args.rounds):
            r = one_run(cfg, store)
            runs.append(r)
            print(f"round {i + 1}: {100 * r['share']:.1f} % of {r['elapsed']:.1f} s training; step 0 "
                  f"{1000 * r['step0']:.0f} ms, epoch ends {', '.join(f'{1000 * s:.0f}' for s in r['epoch_ends'])} ms;"
                  f" {r['bytes']:,} bytes", flush=True)
        store.close()
    shares = [100 * r["share"] for r in runs]
    ends = [s for r in runs for s in r["epoch_ends"]]
    print(f"\n{cfg.model}/{cfg.dataset}, {cfg.epochs} epochs, {args.rounds} runs:")
    print(f"  analysis share of training time: median {statistics.median(shares):.1f} % "
          f"({min(shares):.1f}-{max(shares):.1f} %); goal at most 10 %")
    step0 = statistics.median(r["step0"] for r in runs)
    print(f"  per analysis: step 0 (its own test pass) median {1000 * step0:.0f} ms;"
          f" an epoch end (hooks on the epoch's test pass) median {1000 * statistics.median(ends):.0f} ms "
          f"({1000 * min(ends):.0f}-{1000 * max(ends):.0f})")
    watched = statistics.median(r["watched"] for r in runs)
    plain = statistics.median(r["plain"] for r in runs)
    print(f"  the test pass, watched / plain: {1000 * watched:.0f} / {1000 * plain:.0f} ms "
          f"(+{1000 * (watched - plain):.0f} ms)")
    print(f"  bytes stored per run: median {statistics.median(r['bytes'] for r in runs):,.0f} "
          f"({runs[0]['count']} analyses)")


if __name__ == "__main__":
    main()
