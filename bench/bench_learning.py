"""Do filters visibly learn? Accuracy and first-layer structure of the default run, per data set and seed.

For each data set's default run (and any settings given with --set), trains through the engine and measures
the first conv layer's weights at the end against step 0 (app/training/measures.py): the mean cosine
similarity of each filter with its random start (1: it kept its start; goal <= 0.40, 0.45 for fashion-mnist)
and the mean lag-1 spatial autocorrelation of its kernels (about 0 for noise; goal >= 0.45, 0.50 for
shapes-color). This is how the defaults in app/training/config.py were chosen; for example

    .venv/bin/python -m bench.bench_learning                        # every data set, seeds 0-2
    .venv/bin/python -m bench.bench_learning --datasets mnist --seeds 6 7 8 --set init=default lr=0.003
"""

from __future__ import annotations

import argparse
import json
import statistics

from filterscope.training.config import TrainConfig
from filterscope.training.engine import Engine, EpochSummary
from filterscope.training.measures import layer_measures
from filterscope.training.snapshots import Snapshot
from filterscope.training.threads import serial_torch

GOALS = {  # data set: (largest mean cosine to step 0, smallest structure, smallest test accuracy or None)
    "mnist": (0.40, 0.45, 0.97), "fashion-mnist": (0.45, 0.45, None), "shapes": (0.40, 0.45, None),
    "shapes-color": (0.40, 0.50, None),
}


def parse_value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def add_set(parser: argparse.ArgumentParser) -> None:
    """The benches' `--set name=value ...`: config fields over the defaults (values as JSON, else strings)."""
    parser.add_argument("--set", nargs="*", default=[], help="config fields as name=value")


def set_fields(items: list[str]) -> tuple[dict[str, object], str]:
    """`--set` as config fields, and in words for the first line a bench prints ("defaults with ...")."""
    fields = {k: parse_value(v) for k, v in (item.split("=", 1) for item in items)}
    return fields, f"defaults{' with ' + ' '.join(items) if items else ''}"


def measure(config: TrainConfig) -> dict[str, float]:
    """Train one run; its accuracy, conv1's measures at the end, and its training time."""
    snaps: list[Snapshot] = []
    epochs: list[EpochSummary] = []

    def keep(event: object) -> None:
        if isinstance(event, Snapshot):
            snaps.append(event)
        elif isinstance(event, EpochSummary):
            epochs.append(event)

    engine = Engine(config, emit=keep)
    engine.start()
    engine.join()
    first, last = snaps[0].layers[0].weight, snaps[-1].layers[0].weight
    end, start = layer_measures(last, first), layer_measures(first, first)
    return {"accuracy": epochs[-1].test_accuracy if epochs else float("nan"),
            "cosine": end.cosine_to_start, "structure": end.structure, "structure0": start.structure,
            "moved": end.moved, "seconds": engine.elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(GOALS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_set(parser)
    args = parser.parse_args()
    serial_torch()  # as the server does: only the training thread gets an OpenMP pool (threads.py)
    fields, said = set_fields(args.set)
    print(f"settings: {said}; conv1 at the end against step 0")
    for name in args.datasets:
        rows = []
        for seed in args.seeds:
            row = measure(TrainConfig(dataset=name, seed=seed, **fields))
            rows.append(row)
            print(f"  {name} seed {seed}: test accuracy {row['accuracy']:.4f}, cosine to step 0 {row['cosine']:.3f}, "
                  f"structure {row['structure0']:.2f} -> {row['structure']:.3f}, moved {row['moved']:.1f} x |W0|, "
                  f"{row['seconds']:.1f} s", flush=True)
        cos_goal, structure_goal, acc_goal = GOALS.get(name, (0.40, 0.45, None))
        acc = min(r["accuracy"] for r in rows)
        cos = max(r["cosine"] for r in rows)
        structure = min(r["structure"] for r in rows)
        verdict = "meets" if cos <= cos_goal and structure >= structure_goal and (acc_goal is None or acc >= acc_goal) \
            else "MISSES"
        print(f"{name}: accuracy min {acc:.4f} (mean {statistics.mean(r['accuracy'] for r in rows):.4f}), "
              f"cosine to step 0 max {cos:.3f} (goal <= {cos_goal}), structure min {structure:.3f} "
              f"(goal >= {structure_goal}), {statistics.median(r['seconds'] for r in rows):.1f} s a run: {verdict}")


if __name__ == "__main__":
    main()
