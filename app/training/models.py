"""The model registry with its shipped presets, and generic discovery of their conv layers.

A model is an `nn.Sequential`-like `ConvNet` of named blocks; the engine and the page never special-case a
preset: they find every `nn.Conv2d` and the activation that follows it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PresetInfo:
    """A preset's name, a one-line description, and how to build it."""

    name: str
    title: str
    description: str
    build: Callable[[int, int, int, float], nn.Sequential]  # (channels, size, classes, dropout)
    # The learning rate a run of it gets when its config names none and trains with Adam (the default optimizer):
    # `classic` (three conv layers, 33x tiny's parameters) at tiny's 5e-3 sat at chance on shapes-color for
    # some seeds, its ReLUs dead; at 2e-3 it trains on every data set (bench/bench_presets.py).
    lr: float = 5e-3


@dataclass(frozen=True)
class ConvLayer:
    """One conv layer as the page shows it: the conv and the module whose output is its feature map."""

    name: str
    conv: nn.Conv2d
    activation: nn.Module  # post-activation output = the feature map shown for the probe
    pool: nn.MaxPool2d | nn.AvgPool2d | None = None  # the pooling that directly follows the activation, if any

    @property
    def relu(self) -> bool:
        """True when the feature map is max(0, the conv's output): the page derives one from the other."""
        return isinstance(self.activation, nn.ReLU)

    def pool_info(self) -> dict[str, object] | None:
        """The pooling after this layer as the page applies it: kind, window and stride, or None."""
        pool = self.pool
        if pool is None:
            return None
        size, stride = _pair(pool.kernel_size), _pair(pool.stride if pool.stride is not None else pool.kernel_size)
        return {"kind": "max" if isinstance(pool, nn.MaxPool2d) else "avg", "size": size[0], "stride": stride[0]}


class SeededDropout(nn.Module):
    """Dropout that draws from the run's own generator, so concurrent runs stay reproducible."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        # Drawn on the CPU: the run's generator is a CPU generator, whatever the device.
        keep = torch.empty(x.shape).bernoulli_(1 - self.p, generator=self.generator).to(x.device)
        return x * keep / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# How far from zero each init scheme starts the conv kernels, as a multiple of PyTorch's default bound: the
# first conv layer's, then the deeper ones'. `small-first` (the default) starts only the first layer, whose
# filters a person watches become strokes, near zero: with every layer small (`small`) a default `tiny` run on
# mnist ended with 11-12 of conv2's 32 filters dead and `classic` on shapes-color sat at 51.7 %; with the first
# alone, 2-7 dead and 96 % (bench/bench_presets.py, README "Do the filters learn?").
INIT_SCALES = {"default": (1.0, 1.0), "small": (0.1, 0.1), "small-first": (0.1, 1.0)}


def init_weights(model: nn.Module, generator: torch.Generator, conv_scale: tuple[float, float] = (1.0, 1.0)) -> None:
    """Re-draw every conv and linear parameter as PyTorch's default init does, from `generator`.

    `conv_scale` shrinks the initial weights of the first conv layer's kernels, then of the deeper ones':
    started near zero, what a filter becomes is written by its gradients rather than left over from its
    random start.
    """
    convs = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                weight = module.weight
                cpu = torch.empty(weight.shape)
                nn.init.kaiming_uniform_(cpu, a=math.sqrt(5), generator=generator)
                if isinstance(module, nn.Conv2d):
                    cpu.mul_(conv_scale[min(convs, 1)])
                    convs += 1
                weight.copy_(cpu)
                if module.bias is not None:
                    bound = 1 / math.sqrt(weight[0].numel())  # 1 / sqrt(fan_in)
                    module.bias.copy_(torch.empty(module.bias.shape).uniform_(-bound, bound, generator=generator))
            elif isinstance(module, SeededDropout):
                module.generator = generator


def _flat_features(features: nn.Sequential, channels: int, size: int) -> int:
    """Size of the flattened output of `features` for one (channels, size, size) input."""
    with torch.no_grad():
        return int(features(torch.zeros(1, channels, size, size)).numel())


def _classifier(features: nn.Sequential, hidden: list[int], channels: int, size: int, classes: int,
                dropout: float) -> nn.Sequential:
    """Features, flatten, dense layers with ReLU, dropout before the last layer."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(features.named_children())
    layers["flatten"] = nn.Flatten()
    width = _flat_features(features, channels, size)
    for i, h in enumerate(hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(width, h)
        layers[f"relu_fc{i}"] = nn.ReLU()
        width = h
    if dropout > 0:
        layers["dropout"] = SeededDropout(dropout)
    layers["out"] = nn.Linear(width, classes)
    return nn.Sequential(layers)


def _tiny(channels: int, size: int, classes: int, dropout: float) -> nn.Sequential:
    features = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(channels, 8, 5)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(8, 32, 5)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
    ]))
    return _classifier(features, [64], channels, size, classes, dropout)


def _lenet5(channels: int, size: int, classes: int, dropout: float) -> nn.Sequential:
    # LeCun et al. 1998 with ReLU and max pooling; padding 2 gives the original 32x32 geometry on 28x28.
    features = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(channels, 6, 5, padding=2)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(6, 16, 5)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
    ]))
    return _classifier(features, [120, 84], channels, size, classes, dropout)


def _classic(channels: int, size: int, classes: int, dropout: float) -> nn.Sequential:
    # The textbook Keras MNIST convnet: 32@3x3, pool, 64@3x3, pool, 64@3x3, dense 64, dense 10.
    features = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(channels, 32, 3)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(32, 64, 3)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("conv3", nn.Conv2d(64, 64, 3)), ("relu3", nn.ReLU()),
    ]))
    return _classifier(features, [64], channels, size, classes, dropout)


PRESETS: dict[str, PresetInfo] = {}  # the model registry, in registration order (the order the page lists)


def register(preset: PresetInfo) -> PresetInfo:
    """Make `preset` a model a run can name: a person's own model is registered like the shipped ones."""
    if preset.name in PRESETS:
        raise ValueError(f"model {preset.name!r} is registered twice")
    PRESETS[preset.name] = preset
    return preset


def unregister(name: str) -> None:
    """Forget model `name` (a model that is gone, and tests); KeyError if unknown."""
    get(name)
    del PRESETS[name]


def names() -> tuple[str, ...]:
    """The registered model names, in registration order."""
    return tuple(PRESETS)


def get(name: str) -> PresetInfo:
    """The registered model `name`; KeyError, naming the registered ones, if unknown."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(PRESETS)}") from None


register(PresetInfo("tiny", "Tiny", "conv 8@5x5, pool, conv 32@5x5, pool, dense 64: trains in seconds", _tiny))
register(PresetInfo("lenet5", "LeNet-5", "conv 6@5x5, pool, conv 16@5x5, pool, dense 120, 84: LeCun 1998",
                    _lenet5))
register(PresetInfo("classic", "Classic", "conv 32@3x3, pool, conv 64@3x3, pool, conv 64@3x3, dense 64: the "
                    "textbook Keras example", _classic, lr=2e-3))


def build_model(name: str, channels: int, size: int, classes: int, dropout: float = 0.0) -> nn.Sequential:
    """Build registered model `name` for (channels, size, size) inputs and `classes` outputs."""
    return get(name).build(channels, size, classes, dropout)


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def conv_layers(model: nn.Module) -> list[ConvLayer]:
    """Every Conv2d in definition order, paired with the activation that directly follows it (if any) and
    the pooling that follows that (if any)."""
    named = list(model.named_modules())
    found: list[ConvLayer] = []
    for i, (name, module) in enumerate(named):
        if not isinstance(module, nn.Conv2d):
            continue
        rest = [m for _, m in named[i + 1:i + 3]]
        act = rest.pop(0) if rest and isinstance(rest[0], ACTIVATIONS) else None
        pool = rest[0] if rest and isinstance(rest[0], (nn.MaxPool2d, nn.AvgPool2d)) else None
        found.append(ConvLayer(name, module, act if act is not None else module, pool))
    return found


ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.SiLU)


def feature_shapes(model: nn.Module, channels: int, size: int) -> dict[str, tuple[int, int, int]]:
    """The (C, H, W) feature-map shape of every conv layer for one input image."""
    shapes: dict[str, tuple[int, int, int]] = {}
    hooks = []
    for layer in conv_layers(model):
        def hook(_m: nn.Module, _i: object, out: torch.Tensor, name: str = layer.name) -> None:
            shapes[name] = (int(out.shape[1]), int(out.shape[2]), int(out.shape[3]))
        hooks.append(layer.activation.register_forward_hook(hook))
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, channels, size, size))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return shapes
