"""What each filter detects: the top patches against a brute-force search, receptive fields against hand-worked
sizes and against the gradient's reach, dead and duplicate filters on constructed weights, and the cost."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from filterscope.training.analysis import (
    POSITIVE_EVERY,
    TOP,
    AnalysisEvent,
    Analyst,
    Field,
    analyse,
    duplicates,
    receptive_fields,
)
from filterscope.training.config import TrainConfig
from filterscope.training.datasets import get_dataset
from filterscope.training.engine import Engine
from filterscope.training.loop import TrainLoop, model_only
from filterscope.training.models import build_model, conv_layers
from filterscope.training.snapshots import Snapshot
from tests.conftest import Recorder

# (size, jump, first) per conv layer, worked by hand from models.py: a conv of kernel k adds (k-1) x jump,
# padding p moves the first field by -p x jump, a 2x2 pool adds 1 x jump and doubles the jump.
HAND = {
    "tiny": {"conv1": (5, 1, 0), "conv2": (5 + 1 + 4 * 2, 2, 0)},  # 5; pool -> 6, jump 2; conv 5 -> 14
    "lenet5": {"conv1": (5, 1, -2), "conv2": (14, 2, -2)},  # padding 2 on conv1 only
    "classic": {"conv1": (3, 1, 0), "conv2": (4 + 2 * 2, 2, 0), "conv3": (10 + 2 * 4, 4, 0)},  # 3, 8, 18
}


@pytest.mark.parametrize("preset", sorted(HAND))
def test_receptive_fields_match_the_hand_worked_sizes(preset: str) -> None:
    fields = receptive_fields(build_model(preset, 1, 28, 10), 28)
    assert {name: (f.size, f.jump, f.first) for name, f in fields.items()} == HAND[preset]


@pytest.mark.parametrize("preset", sorted(HAND))
def test_an_output_position_depends_on_no_pixel_outside_its_box(preset: str) -> None:
    """The gradient of one response reaches only input pixels inside the box (and some at its far corner)."""
    torch.manual_seed(0)
    model = build_model(preset, 1, 28, 10).eval()
    fields = receptive_fields(model, 28)
    seen: dict[str, torch.Tensor] = {}
    for layer in conv_layers(model):
        handle = layer.conv.register_forward_hook(lambda _m, _i, out: seen.update(out=out))
        x = torch.randn(1, 1, 28, 28, requires_grad=True)
        model(x)
        handle.remove()
        out = seen["out"]  # pre-activation: the ReLU would zero some gradients
        _, _, h, w = out.shape
        for y, xx in ((0, 0), (h // 2, w // 2), (h - 1, w - 1)):
            grad, = torch.autograd.grad(out[0, 0, y, xx], x, retain_graph=True)
            rows, cols = np.nonzero(grad[0, 0].numpy())
            y0, x0, y1, x1 = fields[layer.name].boxes(np.array(y), np.array(xx), 28).tolist()
            assert rows.min() >= y0 and rows.max() < y1 and cols.min() >= x0 and cols.max() < x1
        assert int(fields[layer.name].boxes(np.array(h - 1), np.array(w - 1), 28)[2]) <= 28


def test_boxes_are_clipped_at_the_image_border() -> None:
    field = Field(size=14, jump=2, first=-2)
    assert field.boxes(np.array(0), np.array(7), 28).tolist() == [0, 12, 12, 26]
    assert field.boxes(np.array(9), np.array(3), 28).tolist() == [16, 4, 28, 18]
    assert field.boxes(np.array([[0, 9]]), np.array([[0, 9]]), 28).shape == (1, 2, 4)


def trained_tiny() -> TrainLoop:
    """`tiny` after one quick epoch on mnist (63 batches of 128)."""
    loop = TrainLoop(TrainConfig(batch_size=128, epochs=1), get_dataset("mnist").info, torch.device("cpu"))
    while not loop.epoch_complete:
        loop.train_batch()
    loop.end_epoch()
    return loop


def test_top_patches_are_those_a_brute_force_search_of_every_image_and_position_finds() -> None:
    loop = trained_tiny()
    model, x = loop.model, loop.data.x_test
    analysis = {a.name: a for a in analyse(model, x)}
    full: dict[str, torch.Tensor] = {}
    hooks = [c.activation.register_forward_hook(lambda _m, _i, out, n=c.name: full.update({n: out}))
             for c in conv_layers(model)]
    with torch.no_grad():
        model.eval()
        model(x)  # the whole test set in one batch: every image, every position
    for h in hooks:
        h.remove()
    fields = receptive_fields(model, 28)
    checked = 0
    for name, out in full.items():
        a = analysis[name]
        n, o, hh, ww = out.shape
        flat = out.reshape(n, o, -1).numpy()
        for f in range(o):
            per_image = flat[:, f].max(axis=1)  # (N,)
            assert np.isclose(a.peak[f], per_image.max(), rtol=1e-5)
            assert np.isclose(a.positive[f], (flat[::POSITIVE_EVERY, f] > 0).mean(), atol=1e-6)  # counted
            assert abs(a.positive[f] - (flat[:, f] > 0).mean()) < 0.01  # and close to every image's share
            if per_image.max() <= 0:
                assert a.dead[f] and not a.filters()[f]["patches"]
                continue
            want = np.argsort(-per_image, kind="stable")[:TOP]
            # The 9 best values, and each from the image it names: a top-9 set (whatever order ties take).
            np.testing.assert_allclose(a.activation[f], per_image[want], rtol=1e-5)
            assert len(set(a.image[f].tolist())) == TOP  # distinct images
            for img, box, value in zip(a.image[f], a.box[f], a.activation[f], strict=True):
                if per_image[img] <= 0:
                    continue
                assert np.isclose(per_image[img], value, rtol=1e-5)
                pos = int(np.argmax(flat[img, f]))
                expected = fields[name].boxes(np.array(pos // ww), np.array(pos % ww), 28)
                assert box.tolist() == expected.tolist()
                checked += 1
    assert checked > 100


def test_dead_and_duplicate_filters_are_found_on_constructed_weights() -> None:
    torch.manual_seed(1)
    model = build_model("tiny", 1, 28, 10)
    conv = conv_layers(model)[0].conv
    with torch.no_grad():
        conv.weight[0].zero_()
        conv.bias[0] = -1.0  # never positive after ReLU: dead
        conv.weight[2] = 3 * conv.weight[1]  # the same detector at another scale: cosine 1
        conv.weight[4] = -conv.weight[3]  # opposite, not a duplicate
    x = torch.randn(64, 1, 28, 28)
    a = analyse(model, x)[0]
    assert a.dead.tolist() == [True] + [False] * 7
    assert a.duplicate_of[1] == 2 and a.duplicate_of[2] == 1
    assert a.duplicate_of[3] == -1 and a.duplicate_of[4] in (-1, 1, 2)
    assert np.isclose(a.similarity[1], 1.0, atol=1e-6) and a.positive[0] == 0
    assert a.body()["dead"] == 1 and a.body()["duplicates"] >= 2


def test_duplicates_on_plain_arrays() -> None:
    w = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.0, 0.0]])
    partner, similarity = duplicates(w)
    assert partner.tolist() == [1, 0, -1, -1]
    assert similarity[2] < 0.95
    partner, _ = duplicates(w[:1])
    assert partner.tolist() == [-1]


def test_an_engine_analyses_step_0_and_every_epoch_end_from_the_snapshot_weights() -> None:
    events = Recorder()
    engine = Engine(TrainConfig(epochs=3, train_subset=480), emit=events, threads=2)  # 15 steps an epoch
    engine.start()
    assert engine.join(120)
    analyses = events.of(AnalysisEvent)
    snaps = {s.seq: s for s in events.of(Snapshot)}
    assert [a.step for a in analyses] == [0, *(engine.loop.steps_per_epoch * e for e in (1, 2, 3))]
    assert all(snaps[a.seq].step == a.step and (a.step == 0 or snaps[a.seq].epoch_end) for a in analyses)
    info = get_dataset("mnist").info
    for a in (analyses[0], analyses[-1]):  # the same answer from the snapshot's weights alone
        model = model_only(engine.config, info, {"model": snaps[a.seq].state})
        again = analyse(model, engine.loop.data.x_test)
        for mine, theirs in zip(a.layers, again, strict=True):
            np.testing.assert_array_equal(mine.image, theirs.image)
            np.testing.assert_array_equal(mine.box, theirs.box)
            np.testing.assert_allclose(mine.activation, theirs.activation, rtol=1e-5)
    # What the analyses cost (their share of training time) is bench_analysis's to measure, not a test's.
    assert 0 < engine.analyst.seconds < engine.elapsed


def test_analysis_leaves_the_test_loss_and_accuracy_as_they_were() -> None:
    loop = trained_tiny()
    plain = loop.evaluate()
    analyst = Analyst(loop.model, 28, lambda _e: None)
    with analyst.collecting() as observe:
        watched = loop.evaluate(observe)
    assert watched == plain
    event = analyst.publish(5, loop.step_count, loop.epoch)
    assert event is not None and [layer.name for layer in event.layers] == ["conv1", "conv2"]
    assert isinstance(loop.model, nn.Module) and not loop.model._forward_hooks


def test_non_finite_weights_give_an_analysis_that_json_can_carry() -> None:
    torch.manual_seed(2)
    model = build_model("tiny", 1, 28, 10)
    conv = conv_layers(model)[0].conv
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = float("inf")  # what a diverging step leaves behind
        conv.weight[1, 0, 0, 0] = float("nan")
    layers = analyse(model, torch.randn(32, 1, 28, 28))
    body = json.dumps([layer.body() for layer in layers], allow_nan=False)  # raises on NaN or Infinity
    assert '"layer": "conv1"' in body and np.all(np.isfinite(layers[0].similarity))
