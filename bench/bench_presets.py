"""Does every preset train on every data set with the defaults? Test accuracy and, at the last analysis, each conv
layer's dead and near-duplicate filters, per model and data set (settings over the defaults with --set).

    .venv/bin/python -m bench.bench_presets                                  # 3 presets x 4 data sets, seed 0
    .venv/bin/python -m bench.bench_presets --models classic --datasets shapes-color --set lr=0.002

Chance is 1/classes (12.5 % for the shapes sets, 10 % for the others): a run ending there never learnt.
"""

from __future__ import annotations

import argparse

from filterscope.training import datasets, models
from filterscope.training.analysis import AnalysisEvent
from filterscope.training.config import TrainConfig
from filterscope.training.engine import Engine, EpochSummary
from filterscope.training.threads import serial_torch

from .bench_learning import add_set, set_fields


def measure(config: TrainConfig) -> tuple[float, list[tuple[str, int, int, int]], float]:
    """Train one run: its last test accuracy, (layer, dead, near-duplicates, filters) at the last analysis, seconds."""
    last: dict[str, object] = {}

    def keep(event: object) -> None:
        if isinstance(event, AnalysisEvent):
            last["analysis"] = event
        elif isinstance(event, EpochSummary):
            last["accuracy"] = event.test_accuracy

    engine = Engine(config, emit=keep)
    engine.start()
    engine.join()
    analysis = last.get("analysis")
    layers = [(b["layer"], b["dead"], b["duplicates"], len(b["filters"]))
              for b in (analysis.body()["layers"] if isinstance(analysis, AnalysisEvent) else [])]
    return float(last.get("accuracy", float("nan"))), layers, engine.elapsed  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(models.names()))
    parser.add_argument("--datasets", nargs="+", default=list(datasets.names()))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    add_set(parser)
    args = parser.parse_args()
    serial_torch()  # as the server does (threads.py)
    fields, said = set_fields(args.set)
    print(f"settings: {said}")
    for model in args.models:
        for name in args.datasets:
            for seed in args.seeds:
                acc, layers, seconds = measure(TrainConfig(model=model, dataset=name, seed=seed, **fields))
                health = ", ".join(f"{n} {dead} dead {dup} dup of {f}" for n, dead, dup, f in layers)
                print(f"  {model} on {name} seed {seed}: test accuracy {acc:.4f} · {health} · {seconds:.1f} s",
                      flush=True)


if __name__ == "__main__":
    main()
