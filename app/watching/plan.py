"""Which part of each conv layer a snapshot keeps: the first layers whole, deeper ones sampled within a budget.

A ResNet-50 has 53 conv layers and 23 M conv weights: a snapshot of all of it (W, dL/dW and ΔW at two bytes
each, and the probe's maps) would be ~140 MB. Filters are learnt most visibly in the first layers, and a page
shows a few dozen tiles of a deep layer at most. So layers are taken in the order they run: each is kept whole
while it fits in what is left of the budget (keeping a small share for every layer still to come, at most
half of what is left); past that a
layer keeps its first filters and, of each, its first input channels, as many as its share allows. The layer's
meta says so (`sampled`), and the page says which layers are sampled and how.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from .probe import ProbeRead

BUDGET = 2 * 1024 * 1024  # bytes a snapshot may take by default: ~3 s of a 6 Mbit/s link, 1 GB per 500 snapshots
SAMPLE_CHANNELS = 8  # input channels kept per filter of a sampled layer: enough to see a kernel's pattern
FLOOR = 8 * 1024  # bytes kept back for each layer still to come


@dataclass(frozen=True)
class LayerPlan:
    name: str
    conv: tuple[int, int, int, int]  # (O, I, kh, kw) of the whole weight
    fmap: tuple[int, int, int]  # (O, H, W) of its output for the probe
    filters: int  # kept: the first `filters` output filters
    channels: int  # and of each the first `channels` input channels
    pool: dict[str, object] | None
    groups: int = 1
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)

    @property
    def sampled(self) -> bool:
        return self.filters < self.conv[0] or self.channels < self.conv[1]

    def meta(self) -> dict[str, Any]:
        """The layer as a run's meta lists it (the page's geometry), with how it is sampled if it is."""
        o, i, kh, kw = self.conv
        out: dict[str, Any] = {"name": self.name, "in_channels": self.channels, "out_channels": self.filters,
                               "kernel": [kh, kw], "fmap": [self.filters, *self.fmap[1:]], "pool": self.pool}
        if self.sampled:
            out["sampled"] = {"filters": o, "channels": i}
        if self.groups != 1 or self.stride != (1, 1) or self.dilation != (1, 1):
            out["conv"] = {"groups": self.groups, "stride": list(self.stride), "dilation": list(self.dilation)}
        return out


def cost(filters: int, channels: int, kh: int, kw: int, h: int, w: int, relu: bool) -> int:
    """Bytes of one layer in a snapshot frame: W, dL/dW, ΔW at 2 bytes, the maps at 1 (twice without a ReLU)."""
    return filters * channels * kh * kw * 6 + filters * h * w * (1 if relu else 2)


def plan_layers(convs: dict[str, nn.Conv2d], read: ProbeRead, budget: int) -> list[LayerPlan]:
    """Each conv the probe ran through, in the order they ran, with what of it a snapshot keeps."""
    names = [n for n in read.order if n in convs]
    left = budget
    plans = []
    for k, name in enumerate(names):
        conv, layer = convs[name], read.layers[name]
        o, i, kh, kw = (int(v) for v in conv.weight.shape)
        _, h, w = layer.preact.shape
        reserve = min(FLOOR * (len(names) - k - 1), left // 2)  # for the layers to come, at most half
        whole = cost(o, i, kh, kw, h, w, layer.relu)
        if whole <= left - reserve:
            filters, channels = o, i
        else:
            channels = min(i, SAMPLE_CHANNELS)
            share = max(FLOOR, (left - reserve) // max(1, len(names) - k))
            filters = max(1, min(o, share // max(1, cost(1, channels, kh, kw, h, w, layer.relu))))
        left -= cost(filters, channels, kh, kw, h, w, layer.relu)
        plans.append(LayerPlan(name, (o, i, kh, kw), (o, h, w), filters, channels, layer.pool, conv.groups,
                               (int(conv.stride[0]), int(conv.stride[1])),
                               (int(conv.dilation[0]), int(conv.dilation[1]))))
    return plans
