"""Transfer learning, measured: a pretrained start against a random one on a small set of another data set.

The start is the run filterscope ships (`tiny` trained 5 epochs on Fashion-MNIST, scripts/pretrain.py), taken
at its end. Each seed trains the same config (same seed, subset and image order, transfer.py) four ways:
from scratch; from the pretrained start; from it with conv1 frozen; with conv1 and conv2 frozen (only the
dense layers learn). It prints the test accuracy after each epoch and how far each layer's weights moved
from their start, ‖W − W₀‖ / ‖W₀‖ per layer (the course's claim: the first layers move least). For example

    .venv/bin/python -m bench.bench_transfer                              # mnist, 300 images, seeds 0 and 1
    .venv/bin/python -m bench.bench_transfer --dataset shapes --subset 500 --epochs 4
"""

from __future__ import annotations

import argparse
import statistics

import torch

from filterscope.paths import PRETRAINED
from filterscope.record.bundle import read_bundle
from filterscope.training import checkpoints
from filterscope.training.config import TrainConfig
from filterscope.training.datasets import get_info
from filterscope.training.loop import TrainLoop, fine_tune_start
from filterscope.training.threads import serial_torch

ARMS = {  # name: (start from the pretrained run, frozen layers)
    "scratch": (False, ()),
    "pretrained": (True, ()),
    "pretrained, conv1 frozen": (True, ("conv1",)),
    "pretrained, conv1-2 frozen": (True, ("conv1", "conv2")),
}


def shipped_model() -> dict[str, torch.Tensor]:
    """The shipped run's model at its end (its last checkpoint)."""
    _, rows = read_bundle(PRETRAINED).rows["checkpoints"]  # (run_id, step, seq, epoch, anchor, resumable, size, data)
    last = max(rows, key=lambda r: r[1])
    return dict(checkpoints.load(last[7])["loop"]["model"])


def train(config: TrainConfig, initial: dict[str, torch.Tensor] | None) -> tuple[list[float], dict[str, float]]:
    """Accuracy after each epoch, and per layer ‖W − W₀‖ / ‖W₀‖ at the end (weights only)."""
    loop = TrainLoop(config, get_info(config.dataset), torch.device("cpu"), initial)
    start = {k: v.clone() for k, v in loop.model_state().items() if k.endswith(".weight")}
    accuracy = []
    while not loop.done:
        while not loop.epoch_complete:
            loop.train_batch()
        loop.end_epoch()
        accuracy.append(loop.evaluate()[1])
    end = loop.model_state()
    moved = {k.removesuffix(".weight"): float((end[k] - w0).norm() / w0.norm()) for k, w0 in start.items()}
    return accuracy, moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--subset", type=int, default=300, help="training images (balanced over the classes)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    serial_torch()  # one thread: the same numbers on any run of this bench
    source = shipped_model()
    rows: dict[str, list[tuple[list[float], dict[str, float]]]] = {arm: [] for arm in ARMS}
    for seed in args.seeds:
        for arm, (pretrained, freeze) in ARMS.items():
            config = TrainConfig(dataset=args.dataset, train_subset=args.subset, epochs=args.epochs, seed=seed,
                                 freeze=freeze)
            initial = None
            if pretrained:
                initial, fit = fine_tune_start(config, get_info(args.dataset), source, "the shipped run")
                if fit.fresh:
                    print(f"  re-initialised: {', '.join(f.layer + ' (' + f.reason + ')' for f in fit.fresh)}")  # noqa: T201
            rows[arm].append(train(config, initial))
    layers = list(rows["scratch"][0][1])
    print(f"\n{args.dataset}, {args.subset} training images, seeds {', '.join(map(str, args.seeds))} "  # noqa: T201
          f"(each cell: one figure per seed)\n")
    print("| start | " + " | ".join(f"accuracy, epoch {e + 1}" for e in range(args.epochs)) + " | "  # noqa: T201
          + " | ".join(f"{name} moved" for name in layers) + " |")
    print("|---" * (1 + args.epochs + len(layers)) + "|")  # noqa: T201
    for arm, results in rows.items():
        acc = [" / ".join(f"{r[0][e]:.3f}" for r in results) for e in range(args.epochs)]
        moved = [" / ".join(f"{r[1][name]:.3f}" for r in results) for name in layers]
        print(f"| {arm} | " + " | ".join(acc + moved) + " |")  # noqa: T201
    gain = statistics.mean(p[0][-1] - s[0][-1] for p, s in zip(rows["pretrained"], rows["scratch"], strict=True))
    print(f"\npretrained - scratch, final accuracy: {gain:+.3f} (mean over seeds)")  # noqa: T201


if __name__ == "__main__":
    main()
