"""The worked arithmetic against references: the forward sum against the conv module and the stored frame, the
probe's dL/dW written out against autograd, and each optimizer's rule against the replayed step and the
snapshot's ΔW."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from filterscope.streaming.codec import decode_frame, encode_snapshot
from filterscope.training.config import TrainConfig
from filterscope.training.data import normalise
from filterscope.training.datasets import get_info
from filterscope.training.engine import Engine
from filterscope.training.replay import replay
from filterscope.training.snapshots import Snapshot
from filterscope.training.worked import (
    grad_by_formula,
    model_at,
    pixel_worked,
    predicted_update,
    probe_forward_backward,
    step_worked,
)
from tests.conftest import Recorder

INFO = get_info("mnist")
# 12 steps an epoch: the dense start (a snapshot after each of the first 10 batches) and a little past it.
BASE = TrainConfig(dataset="mnist", model="tiny", batch_size=32, train_subset=384, epochs=1, seed=5,
                   snapshot_every=5)


def trained(config: TrainConfig) -> dict[int, Snapshot]:
    rec = Recorder()
    engine = Engine(config, emit=rec, threads=1)
    engine.start()
    assert engine.join(60)
    return {s.step: s for s in rec.of(Snapshot)}


@pytest.fixture(scope="module")
def adam_run() -> dict[int, Snapshot]:
    return trained(BASE)


def probe_of(snap: Snapshot) -> torch.Tensor:
    return normalise(snap.probe.pixels, INFO).unsqueeze(0)  # (1, C, H, W)


def test_the_forward_sum_is_the_pre_activation_the_module_and_the_frame_hold(adam_run: dict[int, Snapshot]) -> None:
    snap = adam_run[7]
    model = model_at(BASE, INFO, snap.state)
    seen = probe_forward_backward(model, probe_of(snap), snap.probe.label)
    header, arrays = decode_frame(encode_snapshot(snap))
    for li, name in enumerate(("conv1", "conv2")):
        layer = seen.layers[name]
        stored = arrays[f"layers.{li}.preact"]  # q8s: each side of a map to 1/127 of its own extreme
        spec = header["layers"][li]["preact"]
        for f in (0, layer.weight.shape[0] - 1):
            step = max(spec["pos"][f], spec["neg"][f]) / 127
            for y, x in ((0, 0), (layer.geometry.output[0] - 1, 3), (5, layer.geometry.output[1] - 1)):
                px = pixel_worked(layer, f, y, x)
                assert px.preact == pytest.approx(px.model_preact, abs=1e-5)
                assert px.preact == pytest.approx(float(snap.layers[li].preact[f, y, x]), abs=1e-5)
                assert abs(px.preact - float(stored[f, y, x])) <= step / 2 + 1e-6
                assert px.output == max(px.model_preact, 0.0)  # the ReLU that follows
    conv1 = seen.layers["conv1"].geometry
    assert (conv1.size, conv1.kernel, conv1.output, conv1.pooled) == ((28, 28), (5, 5), (24, 24), (12, 12))


def test_the_probe_dl_dw_written_out_is_autograds(adam_run: dict[int, Snapshot]) -> None:
    snap = adam_run[12]
    x, label = probe_of(snap), snap.probe.label
    seen = probe_forward_backward(model_at(BASE, INFO, snap.state), x, label)
    # autograd on a model of its own, no hooks: the reference
    model = model_at(BASE, INFO, snap.state)
    loss = F.cross_entropy(model(x), torch.tensor([label]))
    conv1, conv2 = model.get_submodule("conv1"), model.get_submodule("conv2")
    g1, g2, gb = torch.autograd.grad(loss, [conv1.weight, conv2.weight, conv1.bias])
    assert seen.loss == pytest.approx(float(loss.detach()), rel=1e-6)
    for name, ref in (("conv1", g1), ("conv2", g2)):
        layer = seen.layers[name]
        assert np.allclose(layer.grad, ref.numpy(), rtol=1e-5, atol=1e-9), name
        scale = float(ref.abs().max())
        assert scale > 0
        for f in range(layer.weight.shape[0]):
            assert np.allclose(grad_by_formula(layer, f), ref[f].numpy(), rtol=1e-4, atol=1e-6 * scale), (name, f)
    layer = seen.layers["conv1"]
    assert np.allclose(layer.grad_bias, gb.numpy(), rtol=1e-5, atol=1e-9)
    assert np.allclose(layer.delta_output * (layer.preact > 0), layer.delta)  # the ReLU gates δ


def test_padding_stride_dilation_and_groups_are_the_modules_own() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(2, 4, 3, padding=2, stride=2, dilation=2)), ("act1", nn.Tanh()),
        ("pool1", nn.MaxPool2d(3, stride=2, padding=1)),
        ("conv2", nn.Conv2d(4, 6, 3, groups=2, padding="same", bias=False)), ("act2", nn.ReLU()),
        ("flat", nn.Flatten()), ("out", nn.Linear(6 * 4 * 4, 3)),
    ])).eval()
    x = torch.randn(1, 2, 15, 15)
    seen = probe_forward_backward(model, x, 1)
    g = torch.autograd.grad(F.cross_entropy(model(x), torch.tensor([1])), [model.conv1.weight, model.conv2.weight])
    for name, ref in (("conv1", g[0]), ("conv2", g[1])):
        layer = seen.layers[name]
        for f in range(layer.weight.shape[0]):
            assert np.allclose(grad_by_formula(layer, f), ref[f].numpy(), rtol=1e-4, atol=1e-7), (name, f)
        ho, wo = layer.geometry.output
        for f in range(layer.weight.shape[0]):
            for y in range(ho):
                for xx in range(wo):
                    px = pixel_worked(layer, f, y, xx)
                    assert px.preact == pytest.approx(px.model_preact, abs=1e-5)
    c1 = seen.layers["conv1"].geometry
    assert c1.output == (8, 8) and c1.padding == (2, 2, 2, 2) and c1.pooled == (4, 4)  # (15 + 4 − 4 − 1) / 2 + 1
    assert list(seen.layers["conv2"].channels(5)) == [2, 3]
    # max pooling with padding: the survivor of each window is the value the pooling kept
    layer = seen.layers["conv1"]
    for y in range(8):
        for xx in range(8):
            px = pixel_worked(layer, 0, y, xx)
            assert px.survivor is not None and px.pooled is not None
            assert layer.output[0][px.survivor] == pytest.approx(px.pooled)
    with pytest.raises(ValueError, match="outside the 8×8 map"):
        pixel_worked(layer, 0, 8, 0)


@pytest.mark.parametrize("optimizer,weight_decay", [("sgd", 0.0), ("momentum", 3e-4), ("adam", 3e-4), ("adam", 0.0)])
def test_each_optimizers_rule_worked_is_the_replayed_step_and_the_snapshots_delta(optimizer: str,
                                                                               weight_decay: float) -> None:
    config = BASE.model_copy(update={"optimizer": optimizer, "weight_decay": weight_decay, "epochs": 1,
                                     "lr": 0.05 if optimizer != "adam" else 5e-3})
    snaps = trained(config)
    for step in (1, 2, 9):  # the dense start: each snapshot's ΔW spans one batch
        worked = replay(config, INFO, step - 1, None, {}, 1, lambda loop: step_worked(loop, {}))
        assert worked.step == step and worked.lr == pytest.approx(snaps[step].lr)
        for li, layer in enumerate(snaps[step].layers):
            s = worked.layers[layer.name]
            assert np.array_equal(s.after, layer.weight)  # the replay is the run, bit for bit
            assert np.array_equal(s.grad, layer.grad)
            predicted = predicted_update(worked, layer.name)
            scale = float(np.abs(layer.update).max())
            assert scale > 0
            assert np.allclose(predicted, layer.update, rtol=1e-4, atol=1e-4 * scale), (optimizer, step, li)
            assert np.allclose(s.after - s.before, layer.update, atol=1e-6 * scale)
        if optimizer == "adam":
            assert worked.t == step and set(s.state_after) == {"m", "v"}
            assert (step == 1) == (s.state_before == {})
        elif optimizer == "momentum":
            assert set(s.state_after) == {"velocity"}
        else:
            assert s.state_after == {}
