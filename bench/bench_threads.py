"""What keeping one thread count for a whole run costs: samples/s against `adaptive` re-tuning.

A run trains on one thread count from its first step to its last (the default: every core but one), so that
a resumed run ends bit for bit where it would have and two runs of one seed are identical; `adaptive` re-picks
one thread or all cores as the machine's load changes (app/training/threads.py). Each round trains the
default run through the engine (in this process, no server, each run in its own training thread as the
server's are) once per policy and condition, in rotating order:

- undisturbed: nothing else of ours running;
- one core busy elsewhere: another process spinning on one core for the whole run, started before it.

Each policy's speed is divided by `adaptive`'s in the same round and condition (a ratio taken side by side,
which this shared, noisy machine moves far less than raw samples/s); the figures are medians of those
per-round ratios. It also prints how far apart each policy's final weights are from round to round: 0 for a
policy whose runs repeat bit for bit.

    .venv/bin/python -m bench.bench_threads [--rounds 4] [--epochs 5] [--subset N] [--policies 0 adaptive 2]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch

from filterscope.config import Settings
from filterscope.training.config import TrainConfig
from filterscope.training.datasets import get_dataset
from filterscope.training.engine import CheckpointEvent, Engine, Event
from filterscope.training.threads import TRAINING_THREADS, run_threads, serial_torch


@contextmanager
def undisturbed() -> Iterator[None]:
    yield


@contextmanager
def busy_core() -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.2)  # spinning before the run starts, as another program would be
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


CONDITIONS: dict[str, Callable[[], AbstractContextManager[None]]] = {"undisturbed": undisturbed,
                                                                     "one core busy elsewhere": busy_core}


def train(cfg: TrainConfig, threads: int) -> tuple[float, dict[str, torch.Tensor], dict[int, int]]:
    """Train the run; samples/s of training time, its final weights, and steps reported at each thread count."""
    final: dict[str, torch.Tensor] = {}
    counts: dict[int, int] = {}

    def listen(event: Event) -> None:  # the training thread: its thread count is the run's at this moment
        counts[torch.get_num_threads()] = counts.get(torch.get_num_threads(), 0) + 1
        if isinstance(event, CheckpointEvent) and not event.resumable:
            final.update(event.state["loop"]["model"])

    engine = Engine(cfg, emit=listen, threads=threads)
    engine.start()
    engine.join()
    n = engine.loop.train_count
    return n * cfg.epochs / engine.elapsed, final, counts


def distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest relative distance between two models' conv layers' weights (0: bit for bit)."""
    keys = [k for k in a if k.startswith("features") or "conv" in k] or list(a)
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-30)) for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--subset", type=int, default=None, help="train on this many images (default: all)")
    parser.add_argument("--policies", nargs="+", default=["0", "adaptive"],
                        help="FILTERSCOPE_TRAINING_THREADS values (0: the default; compared with adaptive)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a stopped bench stops its busy process too
    policies = list(dict.fromkeys([*args.policies, "adaptive"]))
    settings = {p: Settings(training_threads=p).training_threads for p in policies}
    cfg = TrainConfig(epochs=args.epochs, train_subset=args.subset)
    serial_torch()  # this thread computes nothing; only the training threads get an OpenMP pool
    get_dataset(cfg.dataset)  # loaded once, before any run is timed
    print(f"config: {cfg.model_dump_json()}")
    print(f"torch {torch.__version__}, {TRAINING_THREADS} cores for torch; policies: " + ", ".join(
        f"{p} = {run_threads(settings[p])}" for p in policies))
    jobs = [(cond, p) for cond in CONDITIONS for p in policies]
    speed: dict[tuple[str, str], list[float]] = {job: [] for job in jobs}
    models: dict[tuple[str, str], list[dict[str, torch.Tensor]]] = {job: [] for job in jobs}
    used: dict[tuple[str, str], dict[int, int]] = {job: {} for job in jobs}
    for r in range(args.rounds):
        shift = r % len(jobs)  # each job goes first in turn, so that slow spells fall on each
        for cond, p in jobs[shift:] + jobs[:shift]:
            with CONDITIONS[cond]():
                s, final, counts = train(cfg, settings[p])
            speed[cond, p].append(s)
            models[cond, p].append(final)
            for t, c in counts.items():
                used[cond, p][t] = used[cond, p].get(t, 0) + c
        print(f"round {r + 1}: " + "; ".join(f"{cond}, {p}: {speed[cond, p][-1]:,.0f}" for cond, p in jobs)
              + " samples/s", flush=True)
    print()
    print(f"{args.rounds} rounds; samples/s median (range); ratio: median of per-round ratios to adaptive (range)")
    for cond in CONDITIONS:
        for p in policies:
            v = speed[cond, p]
            line = f"{cond:<24} {p:>9}: {statistics.median(v):>7,.0f} samples/s ({min(v):,.0f}-{max(v):,.0f})"
            if p != "adaptive":
                ratios = [a / b for a, b in zip(v, speed[cond, "adaptive"], strict=True)]
                line += f"  ratio {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            events = used[cond, p]
            line += "  events at " + ", ".join(f"{t} thr {100 * c / sum(events.values()):.0f}%"
                                                for t, c in sorted(events.items()))
            print(line)
    for p in policies:  # the same seed every time: a policy that repeats itself gives 0
        runs = [m for cond in CONDITIONS for m in models[cond, p]]
        spread = max(distance(m, runs[0]) for m in runs[1:]) if len(runs) > 1 else 0.0
        print(f"{p:>9}: final weights across all {len(runs)} runs: largest relative distance {spread:.1e}")
    for p in policies:  # what a busy core costs each policy, against its own undisturbed run of the round
        kept = [b / u for b, u in zip(speed["one core busy elsewhere", p], speed["undisturbed", p], strict=True)]
        print(f"{p:>9}: one core busy elsewhere against undisturbed {statistics.median(kept):.2f} "
              f"({min(kept):.2f}-{max(kept):.2f})")


if __name__ == "__main__":
    main()
