"""Three networks unlike the built-in presets, trained by a script of their own under `filterscope.watch`:
a small ResNet (BatchNorm, F.relu in forward, residual adds, a strided 1x1 downsample, global average pooling),
a net of depthwise, grouped, dilated, strided and 1x7 convs without bias on non-square colour images, and a
VGG-style net pooling with F.max_pool2d.

    python -m tests.watching.nets ARCH STEPS DATA_DIR OUT [--unwatched] [--hang-after N] [--budget BYTES]

trains ARCH for STEPS steps (seed 0, one thread), watched into DATA_DIR unless --unwatched, and saves the
final state dict to OUT; with --hang-after N it prints "hanging" after N steps and sleeps (to be killed).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class SmallResNet(nn.Module):
    def __init__(self, channels: int = 1, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(channels, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.layer1 = Block(8, 8, 1)
        self.layer2 = Block(8, 16, 2)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Odd(nn.Module):
    """Depthwise, grouped, dilated, strided and non-square kernels, no biases, colour non-square input."""

    def __init__(self) -> None:
        super().__init__()
        self.wide = nn.Conv2d(3, 12, (1, 7), padding=(0, 3), bias=False)
        self.depthwise = nn.Conv2d(12, 12, 3, padding=1, groups=12, bias=False)
        self.grouped = nn.Conv2d(12, 16, 3, stride=2, groups=4, bias=False)
        self.dilated = nn.Conv2d(16, 16, 3, dilation=2, bias=False)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.wide(x))
        x = F.relu(self.depthwise(x))
        x = F.relu(self.grouped(x))
        x = torch.relu(self.dilated(x))
        return self.fc(x.mean(dim=(2, 3)))


class Vggish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.conv3 = nn.Conv2d(6, 12, 3, padding=1)
        self.fc = nn.Linear(12 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        return self.fc(x.flatten(1))


NETS = {"resnet": (SmallResNet, (1, 28, 28), 10), "odd": (Odd, (3, 24, 32), 4), "vggish": (Vggish, (1, 28, 28), 10)}


def batches(arch: str, steps: int, batch: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same `steps` batches every time: shipped mnist digits for 1-channel nets, seeded noise otherwise."""
    _, shape, classes = NETS[arch]
    g = torch.Generator().manual_seed(1)
    if shape[0] == 1:
        from filterscope.training.datasets import get_dataset
        data = get_dataset("mnist")
        x = torch.from_numpy(data.x_train[:steps * batch]).float().div(255)
        y = torch.from_numpy(data.y_train[:steps * batch]).long()
    else:
        x = torch.rand((steps * batch, *shape), generator=g)
        y = torch.randint(0, classes, (steps * batch,), generator=g)
    return [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(steps)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("arch", choices=sorted(NETS))
    parser.add_argument("steps", type=int)
    parser.add_argument("data_dir")
    parser.add_argument("out")
    parser.add_argument("--unwatched", action="store_true")
    parser.add_argument("--hang-after", type=int, default=0)
    parser.add_argument("--budget", type=int, default=None, help="the watcher's snapshot byte budget")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net_class, shape, _ = NETS[args.arch]
    model = net_class()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = batches(args.arch, args.steps)
    test_x = data[-1][0]
    watcher = None
    if not args.unwatched:
        import filterscope
        options = {} if args.budget is None else {"budget": args.budget}
        watcher = filterscope.watch(model, optimizer=opt, images=test_x, name=f"{args.arch} under test",
                                    data_dir=args.data_dir, snapshot_every=5, **options)
    for i, (x, y) in enumerate(data):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)  # as many scripts do: the gradient is gone by the time step() is called
        if watcher is not None:
            watcher.step(loss)
        if args.hang_after and i + 1 == args.hang_after:
            print("hanging", flush=True)
            time.sleep(600)
    if watcher is not None:
        watcher.epoch(test_accuracy=0.5)
        watcher.close()
        print(f"run {watcher.run_id}", flush=True)
    torch.save(model.state_dict(), args.out)
    sys.exit(0)


if __name__ == "__main__":
    main()
