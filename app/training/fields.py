"""Receptive fields of every conv layer, computed on the graph that actually runs.

Walking modules in definition order is wrong for any net whose forward branches or applies layers
functionally: a ResNet block's 1x1 downsample is defined after the 3x3 convs it runs beside, and `F.max_pool2d`
in `forward` is no module at all. Here one forward pass of a blank image builds the autograd graph, and the
graph is walked from each conv's output back to the image: every convolution and pooling node on the way
composes its kernel, stride, padding and dilation into the field (Araujo, Norris and Sim, "Computing Receptive
Fields of Convolutional Neural Networks", Distill 2019), per axis, so 1x7 kernels and non-square images are
right; where paths join (a residual add, a concatenation), the field is the union of theirs: the largest over
all paths, as that article defines it. Nodes that move no pixels (activations, norms, adds) keep the field.
Checked against a brute-force gradient measurement and the published VGG-16 table (tests/training/test_fields.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

# Autograd nodes that move the sampling grid, by type name: (kernel, stride, padding, dilation) attributes.
_CONV = ("ConvolutionBackward0", "MkldnnConvolutionBackward0", "ThnnConv2DBackward0", "SlowConvDilated2DBackward0")
_MAX_POOL = ("MaxPool2DWithIndicesBackward0", "MkldnnMaxPool2DBackward0")
_AVG_POOL = ("AvgPool2DBackward0",)
_ADAPTIVE = ("AdaptiveAvgPool2DBackward0", "AdaptiveMaxPool2DBackward0")


@dataclass(frozen=True)
class Field:
    """Where a conv layer's output position (y, x) looks in the input: rows y*jump+first ... +size-1 (and the
    same with the `_x` values for columns; they default to the rows' for square geometry)."""

    size: int  # the receptive field's height, in input pixels
    jump: int  # input pixels between neighbouring output positions (the product of strides)
    first: int  # input row of the top of position 0's field; negative with padding
    size_x: int | None = None  # its width (None: as `size`)
    jump_x: int | None = None
    first_x: int | None = None

    @property
    def sizes(self) -> tuple[int, int]:
        return self.size, self.size if self.size_x is None else self.size_x

    def boxes(self, ys: np.ndarray, xs: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
        """(..., 4) int32 (y0, x0, y1, x1), ends exclusive, of positions (ys, xs), clipped at the border of a
        `size` (square) or (height, width) image."""
        h, w = (size, size) if isinstance(size, int) else size
        jx = self.jump if self.jump_x is None else self.jump_x
        fx = self.first if self.first_x is None else self.first_x
        sx = self.sizes[1]
        y0, x0 = ys * self.jump + self.first, xs * jx + fx
        return np.stack([np.maximum(0, y0), np.maximum(0, x0), np.minimum(h, y0 + self.size),
                         np.minimum(w, x0 + sx)], axis=-1).astype(np.int32)

    @classmethod
    def of(cls, rows: _Axis, cols: _Axis) -> Field:
        if rows == cols:
            return cls(rows.size, rows.jump, rows.first)
        return cls(rows.size, rows.jump, rows.first, cols.size, cols.jump, cols.first)


@dataclass(frozen=True)
class _Axis:
    size: int
    jump: int
    first: int

    def through(self, kernel: int, stride: int, padding: int, dilation: int) -> _Axis:
        span = dilation * (kernel - 1) + 1
        return _Axis(self.size + (span - 1) * self.jump, self.jump * stride, self.first - padding * self.jump)

    def union(self, other: _Axis) -> _Axis:
        first = min(self.first, other.first)
        end = max(self.first + self.size, other.first + other.size)
        return _Axis(end - first, max(self.jump, other.jump), first)


def _pair(value: Any, default: int) -> tuple[int, int]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        return default, default
    return int(values[0]), int(values[-1])


def _grid_step(node: Any, fields: tuple[_Axis, _Axis], image: tuple[int, int]) -> tuple[_Axis, _Axis]:
    """The field after `node`, from the field of its image-side input."""
    name = type(node).__name__
    rows, cols = fields
    if name in _CONV:
        weight = node._saved_weight
        if getattr(node, "_saved_transposed", False):  # transposed convs spread rather than gather: not composed
            return fields
        kh, kw = int(weight.shape[-2]), int(weight.shape[-1])
        sh, sw = _pair(node._saved_stride, 1)
        ph, pw = _pair(node._saved_padding, 0)
        dh, dw = _pair(node._saved_dilation, 1)
        return rows.through(kh, sh, ph, dh), cols.through(kw, sw, pw, dw)
    if name in _MAX_POOL or name in _AVG_POOL:
        kh, kw = _pair(node._saved_kernel_size, 1)
        sh, sw = _pair(node._saved_stride, 0)
        sh, sw = sh or kh, sw or kw  # an empty stride means the kernel's
        ph, pw = _pair(node._saved_padding, 0)
        dh, dw = _pair(getattr(node, "_saved_dilation", 1), 1)
        return rows.through(kh, sh, ph, dh), cols.through(kw, sw, pw, dw)
    if name in _ADAPTIVE:  # every output position may see the whole input
        return _Axis(image[0], image[0], 0), _Axis(image[1], image[1], 0)
    return fields


def graph_fields(model: nn.Module, modules: dict[str, nn.Module], shape: tuple[int, int, int]) -> dict[str, Field]:
    """The receptive field at the output of each of `modules` (name: a conv, pooling or any module of `model`)
    for inputs of `shape` (C, H, W), from one forward pass of a zero image in eval mode. The model is left as
    it was: its modes, parameters, buffers and the random state (`quiet`)."""
    outputs: dict[str, Any] = {}

    def keep(name: str) -> Any:
        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            outputs.setdefault(name, out.grad_fn)  # a conv used twice: its first use
        return hook

    param = next(iter(model.parameters()), None)
    x = torch.zeros((1, *shape), dtype=param.dtype if param is not None else torch.float32,
                    device=param.device if param is not None else "cpu", requires_grad=True)
    handles = [module.register_forward_hook(keep(name)) for name, module in modules.items()]
    try:
        with quiet(model), torch.enable_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    source = x.grad_fn  # None: x is a leaf, reached through its AccumulateGrad node
    image = (shape[1], shape[2])
    memo: dict[Any, tuple[_Axis, _Axis] | None] = {}

    def field_of(root: Any) -> tuple[_Axis, _Axis] | None:
        """The field at `root`'s output, or None if no path from it reaches the image (iterative DFS)."""
        stack: list[tuple[Any, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node in memo:
                continue
            if node is source or (type(node).__name__ == "AccumulateGrad" and node.variable is x):
                memo[node] = (_Axis(1, 1, 0), _Axis(1, 1, 0))
                continue
            inputs = [fn for fn, _ in getattr(node, "next_functions", ()) if fn is not None]
            if not expanded:
                stack.append((node, True))
                stack.extend((fn, False) for fn in inputs if fn not in memo)
                continue
            merged: tuple[_Axis, _Axis] | None = None
            for fn in inputs:
                found = memo.get(fn)
                if found is not None:
                    merged = found if merged is None else (merged[0].union(found[0]), merged[1].union(found[1]))
            memo[node] = None if merged is None else _grid_step(node, merged, image)
        return memo[root]

    fields = {}
    for name, fn in outputs.items():
        found = field_of(fn) if fn is not None else None
        if found is not None:
            fields[name] = Field.of(*found)
    return fields


@contextmanager
def quiet(model: nn.Module) -> Iterator[None]:
    """Eval mode for the block, every module's own mode restored after it (a person may keep some in eval),
    and the random state untouched."""
    modes = [(m, m.training) for m in model.modules()]
    with torch.random.fork_rng(devices=[]):
        model.eval()
        try:
            yield
        finally:
            for m, mode in modes:
                m.training = mode
