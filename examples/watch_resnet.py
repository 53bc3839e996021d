"""Your own model in filterscope: a small ResNet trained on Fashion-MNIST by an ordinary PyTorch loop, with
three lines added (marked `# filterscope`). Run it, and open a filterscope server on the same data directory
(`filterscope serve`, or scripts/serve.sh) to watch its filters learn, live or afterwards:

    .venv/bin/python examples/watch_resnet.py [--epochs 2] [--data-dir DIR]

The data set is the one filterscope ships (its test images also go to `images=`, for what each filter
detects); with your own data, pass your own tensors.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import filterscope  # filterscope
from filterscope.training.datasets import get_dataset


class Block(nn.Module):
    """A ResNet basic block: two 3x3 convs with BatchNorm, and a strided 1x1 conv on the shortcut when the
    shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class SmallResNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.layers = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = self.layers(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--data-dir", default=None, help="where runs are kept (default: the server's)")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = get_dataset("fashion-mnist")
    mean, std = 0.2860, 0.3530
    x_train = (torch.from_numpy(data.x_train).float() / 255 - mean) / std
    y_train = torch.from_numpy(data.y_train).long()
    x_test = (torch.from_numpy(data.x_test).float() / 255 - mean) / std
    y_test = torch.from_numpy(data.y_test).long()

    model = SmallResNet()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    steps_per_epoch = len(x_train) // args.batch_size
    watcher = filterscope.watch(model, optimizer=opt, probe=x_test[:1], images=x_test,  # filterscope
                                classes=list(data.info.classes), name=f"small ResNet, lr {args.lr}",
                                epochs=args.epochs, steps_per_epoch=steps_per_epoch, data_dir=args.data_dir)
    with watcher:
        for epoch in range(args.epochs):
            model.train()
            order = torch.randperm(len(x_train))
            for i in range(steps_per_epoch):
                idx = order[i * args.batch_size:(i + 1) * args.batch_size]
                loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                watcher.step(loss)  # filterscope
            model.eval()
            with torch.no_grad():
                logits = model(x_test)
            accuracy = float((logits.argmax(1) == y_test).float().mean())
            print(f"epoch {epoch + 1}: test accuracy {accuracy:.3f}")
            watcher.epoch(test_accuracy=accuracy, test_loss=float(F.cross_entropy(logits, y_test)))
    print(f"run {watcher.run_id}: open /?run={watcher.run_id} on a filterscope server of that data directory")


if __name__ == "__main__":
    main()
