"""Try training settings on the engine and print accuracy and first-layer structure measures per seed.

How the defaults of TrainConfig were chosen (issue: filters that visibly learn). Example:
    .venv/bin/python scripts/tune_defaults.py --dataset mnist --seeds 0 1 2 --set init=small weight_decay=1e-4
`--scale` overrides the 'small' init's conv scale for the experiment.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from app.training import models
from app.training.config import TrainConfig
from app.training.engine import Engine
from app.training.measures import layer_measures
from app.training.threads import serial_torch


def parse_value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", nargs="*", default=[], help="config fields as name=value")
    parser.add_argument("--scale", type=float, default=None, help="conv scale of init=small")
    args = parser.parse_args()
    serial_torch()  # as the server does: only the training thread gets an OpenMP pool (threads.py)
    if args.scale is not None:
        models.INIT_SCALES["small"] = args.scale
    fields = dict(item.split("=", 1) for item in args.set)
    rows = []
    for seed in args.seeds:
        config = TrainConfig(dataset=args.dataset, seed=seed, snapshot_every=10_000,
                             **{k: parse_value(v) for k, v in fields.items()})
        engine = Engine(config)
        start = engine.snapshots  # filled as the run goes
        began = time.perf_counter()
        engine.start()
        engine.join()
        wall = time.perf_counter() - began
        snaps = start.list()
        first, last = snaps[0].layers[0].weight, snaps[-1].layers[0].weight
        m = layer_measures(last, first)
        m0 = layer_measures(first, first)
        acc = engine.history[-1].test_accuracy if engine.history else float("nan")
        rows.append((acc, m.cosine_to_start, m.structure, m0.structure, wall))
        print(f"seed {seed}: acc {acc:.4f}  cos {m.cosine_to_start:.3f}  structure {m0.structure:.2f} -> "
              f"{m.structure:.3f}  moved {m.moved:.2f}  {wall:.1f} s  [{engine.status.value}]", flush=True)
    a = np.array(rows)
    print(f"{args.dataset} {' '.join(args.set)} scale={models.INIT_SCALES['small']}: acc min {a[:, 0].min():.4f} "
          f"mean {a[:, 0].mean():.4f} | cos max {a[:, 1].max():.3f} | structure min {a[:, 2].min():.3f} | "
          f"{a[:, 4].mean():.1f} s")


if __name__ == "__main__":
    main()
