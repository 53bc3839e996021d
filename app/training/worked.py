"""The arithmetic behind one filter, worked with the model's own numbers: forward, backward and the update.

Forward: one output pixel of a conv is the kernel times the input patch under it, summed, plus the bias (the
course's (I * F)(x, y) = Σᵢ Σⱼ I(x+i, y+j) F(i, j)); then the activation and the pooling that follow it.
Backward: for one image, dL/dW[i, j] = Σₓᵧ I(x+i, y+j) · δ(x, y), where δ = dL/d(the conv's output), the same
patches read against the gradient instead of the kernel; a batch's dW is the mean of such terms, one per image.
Update: the optimizer's last step for every kernel entry, with its own state before and after (Adam's m and v,
momentum's velocity), read from the loop replayed to the batch before.

Everything is read from the modules that run (padding, stride, dilation, groups, bias, the activation and the
pooling that follow each conv: models.conv_layers), never assumed from a preset. Indices count from 0, as
PyTorch's do: W[f, c, i, j] is filter f, input channel c, row i, column j.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .datasets import DatasetInfo
from .loop import OPTIMIZERS, TrainLoop
from .models import ConvLayer, build_model, conv_layers
from .replay import advance


@dataclass(frozen=True)
class Geometry:
    """How a conv turns an input of `size` into its output, and what its pooling makes of that."""

    size: tuple[int, int]  # (H, W) of the input
    kernel: tuple[int, int]  # (kh, kw)
    padding: tuple[int, int, int, int]  # (top, bottom, left, right) rows and columns added
    padding_mode: str  # "zeros", "reflect", ...
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    output: tuple[int, int]  # (H', W')
    pool: dict[str, Any] | None  # kind, size, stride, padding of the pooling after the activation
    pooled: tuple[int, int] | None  # (H'', W'')


@dataclass(frozen=True)
class LayerForward:
    """One conv layer seen by one image: its padded input, output, activation, pooling and their gradients."""

    name: str
    geometry: Geometry
    padded: np.ndarray  # (C_in, H + pads, W + pads) float32: the input with the conv's own padding
    weight: np.ndarray  # (O, C_in / groups, kh, kw)
    bias: np.ndarray  # (O,) zeros when the conv has none
    has_bias: bool
    preact: np.ndarray  # (O, H', W') the conv's output
    output: np.ndarray  # (O, H', W') after the activation (the preact when there is none)
    pooled: np.ndarray | None  # (O, H'', W'') after the pooling, if any
    activation: str  # the module's class name, e.g. "ReLU"
    delta: np.ndarray  # (O, H', W') dL/d(preact): δ
    delta_output: np.ndarray  # (O, H', W') dL/d(output): δ before the activation's gate
    grad: np.ndarray  # (O, C_in / groups, kh, kw) dL/dW for this image, from autograd
    grad_bias: np.ndarray  # (O,)

    def channels(self, f: int) -> range:
        """The input channels filter `f` reads (all of them unless the conv is grouped)."""
        per = self.weight.shape[1]
        group = f // (self.weight.shape[0] // self.geometry.groups)
        return range(group * per, (group + 1) * per)

    def patch(self, f: int, y: int, x: int) -> np.ndarray:
        """(C_in / groups, kh, kw): the padded input under filter `f` at output pixel (y, x)."""
        (kh, kw), (sy, sx), (dy, dx) = self.geometry.kernel, self.geometry.stride, self.geometry.dilation
        c = self.channels(f)
        return self.padded[c.start:c.stop, y * sy:y * sy + (kh - 1) * dy + 1:dy, x * sx:x * sx + (kw - 1) * dx + 1:dx]


@dataclass(frozen=True)
class ProbeForward:
    """Every conv layer for one image, the class its loss is taken against, and that loss."""

    layers: dict[str, LayerForward]
    target: int
    labelled: bool  # the target is the image's true class; else (no label known) the class the model predicts
    loss: float
    probs: np.ndarray  # (classes,)


def model_at(config: TrainConfig, info: DatasetInfo, state: dict[str, torch.Tensor]) -> nn.Module:
    """A CPU model with the weights of `state`, in eval mode (as the snapshot's probe went through it)."""
    model = build_model(config.model, info.channels, info.size, len(info.classes), config.dropout)
    model.load_state_dict(state)
    model.eval()
    return model


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def _pool_info(pool: nn.Module | None) -> dict[str, Any] | None:
    if not isinstance(pool, (nn.MaxPool2d, nn.AvgPool2d)):
        return None
    size = _pair(pool.kernel_size)
    stride = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
    return {"kind": "max" if isinstance(pool, nn.MaxPool2d) else "avg", "size": list(size), "stride": list(stride),
            "padding": list(_pair(pool.padding)), "ceil_mode": bool(pool.ceil_mode),
            "dilation": list(_pair(getattr(pool, "dilation", 1)))}


def pad_like(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`x` (N, C, H, W) padded as `conv` pads it, so that the conv is a plain sliding window over the result."""
    pads = list(conv._reversed_padding_repeated_twice)  # (left, right, top, bottom), for string padding too
    if not any(pads):
        return x
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    return F.pad(x, pads, mode=mode)


def probe_forward_backward(model: nn.Module, x: torch.Tensor, target: int | None = None) -> ProbeForward:
    """Run one normalised image `x` (1, C, H, W) through `model` as it is (eval mode: no dropout) and back from
    the cross-entropy loss against `target` (the predicted class when None); read every conv layer on the way."""
    layers = conv_layers(model)
    seen: dict[str, dict[str, torch.Tensor]] = {layer.name: {} for layer in layers}
    hooks = []

    def keep(name: str, key: str, grad: bool) -> Any:
        def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            seen[name][key] = out
            if key == "preact":
                seen[name]["input"] = inputs[0].detach()
            if grad and out.requires_grad:
                out.retain_grad()
        return hook

    for layer in layers:
        hooks.append(layer.conv.register_forward_hook(keep(layer.name, "preact", True)))
        if layer.activation is not layer.conv:
            hooks.append(layer.activation.register_forward_hook(keep(layer.name, "output", True)))
        if layer.pool is not None:
            hooks.append(layer.pool.register_forward_hook(keep(layer.name, "pooled", False)))
    model.zero_grad(set_to_none=True)
    try:
        logits = model(x)  # (1, classes)
        chosen = int(logits[0].argmax()) if target is None else target
        loss = F.cross_entropy(logits, torch.tensor([chosen]))
        loss.backward()  # type: ignore[no-untyped-call]
    finally:
        for h in hooks:
            h.remove()
    found = {}
    for layer in layers:
        s = seen[layer.name]
        found[layer.name] = _layer_forward(layer, s)
    model.zero_grad(set_to_none=True)
    probs = torch.softmax(logits[0].detach(), 0).numpy()
    return ProbeForward(found, chosen, target is not None, float(loss.detach()), probs)


def _numpy(t: torch.Tensor | None, like: torch.Tensor) -> np.ndarray:
    if t is None:  # no gradient reached it (a layer the loss does not depend on)
        return np.zeros(like.shape[1:], np.float32)
    return t.detach()[0].float().numpy().copy()


def _layer_forward(layer: ConvLayer, seen: dict[str, torch.Tensor]) -> LayerForward:
    conv = layer.conv
    preact = seen["preact"]
    output = seen.get("output", preact)
    padded = pad_like(conv, seen["input"])[0]  # (C_in, Hp, Wp)
    pooled = seen.get("pooled")
    pool = _pool_info(layer.pool)
    pads = conv._reversed_padding_repeated_twice
    geometry = Geometry(
        size=(int(seen["input"].shape[2]), int(seen["input"].shape[3])), kernel=_pair(conv.kernel_size),
        padding=(int(pads[2]), int(pads[3]), int(pads[0]), int(pads[1])), padding_mode=str(conv.padding_mode),
        stride=_pair(conv.stride), dilation=_pair(conv.dilation), groups=int(conv.groups),
        output=(int(preact.shape[2]), int(preact.shape[3])), pool=pool,
        pooled=(int(pooled.shape[2]), int(pooled.shape[3])) if pooled is not None else None)
    weight = conv.weight.detach().numpy().copy()
    grad_w = conv.weight.grad
    grad_b = conv.bias.grad if conv.bias is not None else None
    return LayerForward(
        name=layer.name, geometry=geometry, padded=padded.numpy().copy(), weight=weight,
        bias=conv.bias.detach().numpy().copy() if conv.bias is not None else np.zeros(weight.shape[0], np.float32),
        has_bias=conv.bias is not None, preact=_numpy(preact, preact), output=_numpy(output, output),
        pooled=_numpy(pooled, pooled) if pooled is not None else None, activation=type(layer.activation).__name__
        if layer.activation is not conv else "none",
        delta=_numpy(preact.grad, preact), delta_output=_numpy(output.grad, output),
        grad=grad_w.detach().numpy().copy() if grad_w is not None else np.zeros_like(weight),
        grad_bias=grad_b.detach().numpy().copy() if grad_b is not None else np.zeros(weight.shape[0], np.float32))


def grad_by_formula(layer: LayerForward, f: int) -> np.ndarray:
    """(C_in / groups, kh, kw) dL/dW of filter `f` as the sum written out: Σₓᵧ I(y·s + i·d, x·s + j·d) · δ(y, x),
    in float64 (the check on autograd, and what the page shows the terms of)."""
    (kh, kw), (sy, sx), (dy, dx) = layer.geometry.kernel, layer.geometry.stride, layer.geometry.dilation
    ho, wo = layer.geometry.output
    c = layer.channels(f)
    image = layer.padded[c.start:c.stop].astype(np.float64)  # (C, Hp, Wp)
    delta = layer.delta[f].astype(np.float64)  # (H', W')
    out = np.zeros((len(c), kh, kw))
    for i in range(kh):
        for j in range(kw):
            under = image[:, i * dy:i * dy + (ho - 1) * sy + 1:sy, j * dx:j * dx + (wo - 1) * sx + 1:sx]  # (C, H', W')
            out[:, i, j] = (under * delta).sum(axis=(1, 2))
    return out


@dataclass(frozen=True)
class PixelWorked:
    """Output pixel (y, x) of filter f: the patch, the products, their sum plus the bias, the activation, the pool."""

    y: int
    x: int
    patch: np.ndarray  # (C, kh, kw)
    products: np.ndarray  # (C, kh, kw) patch × kernel
    total: float  # Σ products, in float64
    bias: float
    preact: float  # total + bias, as worked here
    model_preact: float  # the conv module's own output there
    output: float  # after the activation, from the module
    window: tuple[int, int, int, int] | None  # (y0, x0, y1, x1) the pooling window (end exclusive) it lies in
    survivor: tuple[int, int] | None  # the pixel of that window that the pooling keeps (max pooling)
    pooled: float | None  # the pooled value of that window


def pixel_worked(layer: LayerForward, f: int, y: int, x: int) -> PixelWorked:
    """Output pixel (y, x) of filter `f` worked (ValueError if outside the map)."""
    ho, wo = layer.geometry.output
    if not (0 <= y < ho and 0 <= x < wo):
        raise ValueError(f"pixel (y {y}, x {x}) is outside the {ho}×{wo} map; y and x count from 0")
    patch = layer.patch(f, y, x)
    kernel = layer.weight[f]
    products = patch.astype(np.float64) * kernel.astype(np.float64)
    total = float(products.sum())
    bias = float(layer.bias[f])
    window = survivor = pooled = None
    pool = layer.geometry.pool
    if pool is not None and layer.pooled is not None:
        (ph, pw), (sy, sx), (py, px) = pool["size"], pool["stride"], pool["padding"]
        # The first window that holds (y, x): windows are size apart by stride, after `padding` rows/columns.
        wy, wx = max(0, -(-(y + py - ph + 1) // sy)), max(0, -(-(x + px - pw + 1) // sx))
        hp, wp = layer.pooled.shape[1:]
        if wy < hp and wx < wp:
            y0, x0 = wy * sy - py, wx * sx - px
            y1, x1 = min(y0 + ph, ho), min(x0 + pw, wo)
            y0, x0 = max(0, y0), max(0, x0)
            window = (y0, x0, y1, x1)
            block = layer.output[f, y0:y1, x0:x1]
            if pool["kind"] == "max":
                at = np.unravel_index(int(np.argmax(block)), block.shape)  # the first maximum, as PyTorch keeps
                survivor = (y0 + int(at[0]), x0 + int(at[1]))
            pooled = float(layer.pooled[f, wy, wx])
    return PixelWorked(y=y, x=x, patch=patch.copy(), products=products, total=total, bias=bias,
                       preact=total + bias, model_preact=float(layer.preact[f, y, x]),
                       output=float(layer.output[f, y, x]), window=window, survivor=survivor, pooled=pooled)


# ---- the update ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerStep:
    """One conv layer's weights through one optimizer step, with the optimizer's own state for every entry."""

    name: str
    before: np.ndarray  # (O, C, kh, kw) W before the step
    after: np.ndarray  # W after it
    grad: np.ndarray  # dL/dW of the step's batch
    state_before: dict[str, np.ndarray]  # Adam: m, v; momentum: velocity (absent: no state yet)
    state_after: dict[str, np.ndarray]


@dataclass(frozen=True)
class StepWorked:
    """The optimizer step that made step `step`: its rate, the optimizer's settings, every conv layer."""

    step: int  # the step it made (1-based: the first batch makes step 1)
    optimizer: str
    lr: float  # the rate this batch used (the schedule applied)
    weight_decay: float
    settings: dict[str, Any]  # loop.OPTIMIZERS[optimizer]
    t: int | None  # Adam's step count after the step (its bias corrections use it)
    layers: dict[str, LayerStep]


def _state(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict[str, np.ndarray]:
    state = optimizer.state.get(param, {})
    names = {"exp_avg": "m", "exp_avg_sq": "v", "momentum_buffer": "velocity"}
    return {short: state[key].detach().cpu().numpy().copy() for key, short in names.items()
            if isinstance(state.get(key), torch.Tensor)}


def step_worked(loop: TrainLoop, lr_changes: dict[int, float]) -> StepWorked:
    """Train `loop` one batch (the base rate a person set applied first, as the run did) and say what the step
    did to every conv layer; the loop is left one step on."""
    layers = conv_layers(loop.model)
    weights = {layer.name: layer.conv.weight for layer in layers}
    before = {name: w.detach().cpu().numpy().copy() for name, w in weights.items()}
    state_before = {name: _state(loop.optimizer, w) for name, w in weights.items()}
    advance(loop, loop.step_count + 1, lr_changes)
    steps = {}
    for name, w in weights.items():
        grad = w.grad.detach().cpu().numpy().copy() if w.grad is not None else np.zeros(w.shape, np.float32)
        steps[name] = LayerStep(name, before[name], w.detach().cpu().numpy().copy(), grad, state_before[name],
                                _state(loop.optimizer, w))
    first = loop.optimizer.state.get(next(iter(weights.values())), {}) if weights else {}
    t = first.get("step")
    cfg = loop.config
    return StepWorked(step=loop.step_count, optimizer=cfg.optimizer, lr=float(loop.current_lr),
                      weight_decay=float(cfg.weight_decay), settings=dict(OPTIMIZERS[cfg.optimizer]),
                      t=int(t) if t is not None else None, layers=steps)


def predicted_update(step: StepWorked, layer: str) -> np.ndarray:
    """ΔW of `layer` by the optimizer's rule written out (float64), from the state before and the batch's dW:
    what the page works through for one entry, here for all of them."""
    s = step.layers[layer]
    w0, g = s.before.astype(np.float64), s.grad.astype(np.float64) + step.weight_decay * s.before
    lr = step.lr
    if step.optimizer == "adam":
        b1, b2 = step.settings["betas"]
        eps, t = step.settings["eps"], step.t or 1
        m0 = s.state_before.get("m", np.zeros_like(w0))
        v0 = s.state_before.get("v", np.zeros_like(w0))
        m = b1 * m0 + (1 - b1) * g
        v = b2 * v0 + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        return np.asarray(-lr * m_hat / (np.sqrt(v_hat) + eps))
    momentum = float(step.settings.get("momentum", 0.0))
    if momentum:
        velocity = momentum * s.state_before["velocity"] + g if "velocity" in s.state_before else g
        return np.asarray(-lr * velocity)
    return np.asarray(-lr * g)
