"""A person's model on the probe image: every conv layer's output, what its activation made of it and the pooling
that follows, read from the graph that actually ran.

Module order says nothing about what runs after what (`F.relu` in `forward`, a BatchNorm between conv and
activation, a residual add before it). So the probe goes through the model with autograd recording, and the
graph is read from each conv's output forwards: past norms, adds and other nodes that keep each pixel where
it is, to the first ReLU (whose node keeps its result: the feature map after the activation), then to a
pooling node directly after it. A layer whose output reaches no ReLU shows its conv output as its map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..training.fields import quiet

_RELU = ("ReluBackward0", "ReluBackward1")
_PASS = ("NativeBatchNormBackward0", "CudnnBatchNormBackward0", "MkldnnBatchNormBackward0",
         "AddBackward0", "AddBackward1", "CloneBackward0", "MulBackward0")
_POOL = {"MaxPool2DWithIndicesBackward0": "max", "AvgPool2DBackward0": "avg"}


@dataclass(frozen=True)
class LayerRead:
    """One conv layer on the probe: its output, the map after its activation, and the pooling after that."""

    preact: np.ndarray  # (O, H, W) float32: the conv's output
    fmap: np.ndarray  # (O, H, W) float32: after the activation (= preact when none was found)
    relu: bool  # fmap is exactly max(0, preact) (a ReLU straight after the conv): the page derives it
    pool: dict[str, object] | None


@dataclass(frozen=True)
class ProbeRead:
    layers: dict[str, LayerRead]
    probs: np.ndarray  # softmax of the model's output (a flat output; an empty array otherwise)
    order: list[str]  # the layers in the order they ran


def read_probe(model: nn.Module, convs: dict[str, nn.Conv2d], x: torch.Tensor,
               keep: dict[str, int] | None = None) -> ProbeRead:
    """Run `x` (1, C, H, W) through `model` (quiet: eval mode, modes and random state restored, no parameter
    or buffer touched) and read each conv of `convs`; `keep`: the filters kept per layer (the first n)."""
    outputs: dict[str, torch.Tensor] = {}
    order: list[str] = []

    def hook_for(name: str) -> Any:
        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            if name not in outputs:
                outputs[name] = out
                order.append(name)
        return hook

    handles = [conv.register_forward_hook(hook_for(name)) for name, conv in convs.items()]
    try:
        with quiet(model), torch.enable_grad():
            logits = model(x)
            nodes = _consumers(logits.grad_fn) if isinstance(logits, torch.Tensor) else {}
            layers = {}
            for name, out in outputs.items():
                n = (keep or {}).get(name, out.shape[1])
                preact = out[0, :n].detach().float().cpu().numpy().copy()
                fmap, relu, pool = _after(out, nodes)
                after = preact if fmap is None else fmap[0, :n].detach().float().cpu().numpy().copy()
                layers[name] = LayerRead(preact, after, relu, pool)
            probs = np.zeros(0, np.float32)
            if isinstance(logits, torch.Tensor) and logits.dim() == 2:
                probs = torch.softmax(logits[0].detach().float(), dim=0).cpu().numpy()
    finally:
        for h in handles:
            h.remove()
    return ProbeRead(layers, probs, order)


def _consumers(root: Any) -> dict[Any, list[Any]]:
    """Every node of the graph ending at `root`, with the nodes that take its output (the reverse edges)."""
    consumers: dict[Any, list[Any]] = {}
    seen = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for fn, _ in getattr(node, "next_functions", ()):
            if fn is not None:
                consumers.setdefault(fn, []).append(node)
                stack.append(fn)
    return consumers


def _after(out: torch.Tensor, consumers: dict[Any, list[Any]],
           ) -> tuple[torch.Tensor | None, bool, dict[str, object] | None]:
    """(the map after the activation or None, whether it is a ReLU straight on the conv, the pooling after it)."""
    node = out.grad_fn
    direct = True
    for _ in range(8):  # a few pixel-keeping nodes (norm, add) may sit between a conv and its activation
        following = consumers.get(node, [])
        relu = next((n for n in following if type(n).__name__ in _RELU), None)
        if relu is not None:
            result = relu._saved_result
            return result, direct, _pool(consumers.get(relu, []))
        passing = [n for n in following if type(n).__name__ in _PASS]
        if len(passing) != 1:
            return None, False, None
        node, direct = passing[0], False
    return None, False, None


def _pool(following: list[Any]) -> dict[str, object] | None:
    for node in following:
        kind = _POOL.get(type(node).__name__)
        if kind is not None:
            size = [int(v) for v in node._saved_kernel_size]
            stride = [int(v) for v in node._saved_stride] or size
            padding = [int(v) for v in getattr(node, "_saved_padding", [0])] or [0]
            if len(set(size)) == 1 and len(set(stride)) == 1 and not any(padding):
                return {"kind": kind, "size": size[0], "stride": stride[0]}
    return None
