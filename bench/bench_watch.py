"""What `filterscope.watch` costs a person's own training loop, and what it stores.

1. The loop's speed: the small ResNet of examples/watch_resnet.py on Fashion-MNIST (CPU, one thread, batch 64,
   `--steps` steps from a fresh model), unwatched and watched (default cadence, probe, no images; then with
   `images=` 2,000 test images, which adds the analysis at step 0 and the epoch end), alternating in one
   process, median of `--rounds` rounds. The ratio is watched time / unwatched time for the same steps (goal
   at most 1.03: at most 3 %).
2. Bytes per snapshot and per run for that ResNet, and for a ResNet-50-sized model (bottleneck blocks
   [3, 4, 6, 3], 53 convs, 23.5 M conv weights, random weights, 3x224x224 probe) under the default 2 MB
   budget: how its layers are sampled, and what one snapshot costs the loop.

Figures only; nothing here passes or fails. This machine is shared: the rounds alternate so that load
changes hit both sides alike.

    .venv/bin/python -m bench.bench_watch [--steps 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import filterscope
from examples.watch_resnet import SmallResNet
from filterscope.training.datasets import get_dataset


def train(steps: int, batch: int, data: tuple[torch.Tensor, torch.Tensor], watch: dict[str, Any] | None,
          ) -> tuple[float, Any]:
    """Seconds for `steps` steps of a fresh SmallResNet (seed 0), watched with `watch` options if given."""
    torch.manual_seed(0)
    model = SmallResNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = data
    watcher = filterscope.watch(model, optimizer=opt, probe=x[:1], say=False, **watch) if watch is not None \
        else None
    started = time.perf_counter()
    for i in range(steps):
        j = (i * batch) % (len(x) - batch)
        loss = F.cross_entropy(model(x[j:j + batch]), y[j:j + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if watcher is not None:
            watcher.step(loss)
    if watcher is not None:
        watcher.epoch(test_accuracy=0.0)
        watcher.close()
    return time.perf_counter() - started, watcher


def stored(data_dir: Path, run_id: str) -> tuple[int, int]:
    """(snapshots, bytes of their frames) of a run in `data_dir`'s run log."""
    with sqlite3.connect(data_dir / "runs.db") as db:
        n, size = db.execute("SELECT COUNT(*), SUM(LENGTH(frame)) FROM snapshots WHERE run_id = ?",
                             (run_id,)).fetchone()
    return int(n), int(size or 0)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) \
            if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet50(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        blocks: list[nn.Module] = []
        cin = 64
        for width, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for k in range(count):
                blocks.append(Bottleneck(cin, width, stride if k == 0 else 1))
                cin = width * 4
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.fc(F.adaptive_avg_pool2d(self.blocks(x), 1).flatten(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = get_dataset("fashion-mnist")
    x = (torch.from_numpy(data.x_train).float() / 255 - 0.286) / 0.353
    y = torch.from_numpy(data.y_train).long()
    images = (torch.from_numpy(data.x_test[:2000]).float() / 255 - 0.286) / 0.353
    work = Path(tempfile.mkdtemp(prefix="filterscope-bench-watch-"))
    train(20, args.batch, (x, y), None)  # warm up: the first steps allocate
    times: dict[str, list[float]] = {"unwatched": [], "watched": [], "watched + images": []}
    last: dict[str, Any] = {}
    for r in range(args.rounds):
        for name, watch in (("unwatched", None), ("watched", {"data_dir": work}),
                            ("watched + images", {"data_dir": work, "images": images})):
            seconds, watcher = train(args.steps, args.batch, (x, y), watch)
            times[name].append(seconds)
            last[name] = watcher
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    base = statistics.median(times["unwatched"])
    print(f"\nsmall ResNet, {args.steps} steps of batch {args.batch}, 1 thread, median of {args.rounds} rounds:")
    for name in ("watched", "watched + images"):
        ratios = [w / u for w, u in zip(times[name], times["unwatched"], strict=True)]
        print(f"  {name}: {statistics.median(times[name]):.2f} s against {base:.2f} s unwatched: ratio "
              f"{statistics.median(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f}); the watcher's own "
              f"time {last[name].instrument_seconds:.2f} s")
    watcher = last["watched"]
    n, size = stored(work, watcher.run_id)
    print(f"  stored: {n} snapshots, {size / n / 1024:.1f} KB a snapshot, {size / 1024 / 1024:.2f} MB the run")

    torch.manual_seed(0)
    big = ResNet50()
    convs = [m for m in big.modules() if isinstance(m, nn.Conv2d)]
    weights = sum(m.weight.numel() for m in convs)
    started = time.perf_counter()
    w50 = filterscope.watch(big, probe=torch.randn(1, 3, 224, 224), data_dir=work, say=False)
    begin = time.perf_counter() - started
    for _ in range(3):
        w50.step(0.0)
    w50.close()
    n, size = stored(work, w50.run_id)
    sampled = [p for p in w50._plan if p.sampled]
    print(f"\nResNet-50-sized ({len(convs)} convs, {weights / 1e6:.1f} M conv weights; whole, a snapshot would be "
          f"~{weights * 6 / 1024 / 1024:.0f} MB): {size / n / 1024 / 1024:.2f} MB a snapshot under the "
          f"{2} MB budget, {len(w50._plan) - len(sampled)} layers whole, {len(sampled)} sampled (e.g. "
          f"{sampled[-1].name}: {sampled[-1].filters} of {sampled[-1].conv[0]} filters x "
          f"{sampled[-1].channels} of {sampled[-1].conv[1]} channels); start-up {begin:.2f} s, "
          f"{(w50.instrument_seconds - begin) / 4:.2f} s of the loop a snapshot")


if __name__ == "__main__":
    main()
