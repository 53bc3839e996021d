"""Which learning rates train `tiny` on mnist within an epoch, per optimizer (diagnose.GOOD_LR, what the warnings
suggest): each run's test accuracy after one epoch, its end (finished or diverged) and the warnings it raised.

    .venv/bin/python -m bench.bench_lrs                        # the default initial weights
    .venv/bin/python -m bench.bench_lrs --set init=small       # settings over the defaults
"""

from __future__ import annotations

import argparse

from filterscope.training.config import TrainConfig
from filterscope.training.diagnose import GOOD_LR
from filterscope.training.engine import Engine, EpochSummary
from filterscope.training.events import WarningEvent
from filterscope.training.threads import serial_torch

from .bench_learning import add_set, set_fields

RATES = {"sgd": [1e-5, 0.01, 0.05, 0.1, 0.3, 0.5, 1.0], "momentum": [0.01, 0.03, 0.05, 0.3],
         "adam": [0.0005, 0.005, 0.05, 1.0]}


def measure(config: TrainConfig) -> tuple[float, str, list[str]]:
    """One run: its last test accuracy, how it ended, its warnings as 'kind@step'."""
    accuracy, warnings = [float("nan")], []

    def keep(event: object) -> None:
        if isinstance(event, EpochSummary):
            accuracy[0] = event.test_accuracy
        elif isinstance(event, WarningEvent):
            warnings.append(f"{event.kind}@{event.step}")

    engine = Engine(config, emit=keep)
    engine.start()
    engine.join()
    return accuracy[0], engine.status.value, warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", nargs="+", default=list(RATES))
    add_set(parser)
    args = parser.parse_args()
    serial_torch()  # as the server does (threads.py)
    fields, said = set_fields(args.set)
    print(f"tiny on mnist, 1 epoch, seed 0: {said}")
    for optimizer in args.optimizers:
        print(f"{optimizer} (GOOD_LR {GOOD_LR[optimizer]})")
        for lr in RATES[optimizer]:
            config = TrainConfig(**{"model": "tiny", "dataset": "mnist", "epochs": 1, **fields,
                                    "optimizer": optimizer, "lr": lr})
            acc, status, warnings = measure(config)
            print(f"  lr {lr:g}: {status}, test accuracy {acc:.4f}, warnings {', '.join(warnings) or 'none'}",
                  flush=True)


if __name__ == "__main__":
    main()
