"""Model presets build for every data set, and conv layers are found generically."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from filterscope.training.config import TrainConfig
from filterscope.training.datasets import get_info, list_datasets
from filterscope.training.models import INIT_SCALES, PRESETS, build_model, conv_layers, feature_shapes, init_weights


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("dataset", [i.name for i in list_datasets()])
def test_every_preset_fits_every_dataset(preset: str, dataset: str) -> None:
    info = get_info(dataset)
    model = build_model(preset, info.channels, info.size, len(info.classes), dropout=0.5)
    out = model(torch.zeros(4, info.channels, info.size, info.size))  # (N, C, H, W) -> (N, classes)
    assert out.shape == (4, len(info.classes))
    first = conv_layers(model)[0]
    assert first.conv.in_channels == info.channels


def test_presets_have_the_documented_conv_layers() -> None:
    def geometry(name: str) -> list[tuple[int, int, int]]:
        return [(c.conv.in_channels, c.conv.out_channels, c.conv.kernel_size[0])
                for c in conv_layers(build_model(name, 1, 28, 10))]

    assert geometry("tiny") == [(1, 8, 5), (8, 32, 5)]
    assert geometry("lenet5") == [(1, 6, 5), (6, 16, 5)]
    assert geometry("classic") == [(1, 32, 3), (32, 64, 3), (64, 64, 3)]


def test_feature_shapes_follow_the_geometry() -> None:
    assert feature_shapes(build_model("tiny", 1, 28, 10), 1, 28) == {"conv1": (8, 24, 24), "conv2": (32, 8, 8)}
    assert feature_shapes(build_model("classic", 1, 28, 10), 1, 28) == {
        "conv1": (32, 26, 26), "conv2": (64, 11, 11), "conv3": (64, 3, 3)}


def test_conv_discovery_is_generic_and_pairs_the_activation() -> None:
    model = nn.Sequential(OrderedDict([
        ("a", nn.Conv2d(3, 4, 3)), ("act", nn.Tanh()),
        ("b", nn.Conv2d(4, 2, 1)),  # no activation: its own output is the feature map
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(2, 5)),
    ]))
    found = conv_layers(model)
    assert [c.name for c in found] == ["a", "b"]
    assert isinstance(found[0].activation, nn.Tanh)
    assert found[1].activation is found[1].conv


def test_init_weights_is_seeded_and_in_default_range() -> None:
    a, b = build_model("tiny", 1, 28, 10), build_model("tiny", 1, 28, 10)
    init_weights(a, torch.Generator().manual_seed(3))
    init_weights(b, torch.Generator().manual_seed(3))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    w = a.conv1.weight  # fan_in 25: PyTorch's default bound is 1/sqrt(25) = 0.2
    assert w.abs().max() <= 0.2 and w.std() > 0.05


def test_unknown_preset_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown model 'vgg'"):
        build_model("vgg", 1, 28, 10)


def test_small_init_shrinks_only_the_conv_kernels() -> None:
    default, small = build_model("tiny", 1, 28, 10), build_model("tiny", 1, 28, 10)
    init_weights(default, torch.Generator().manual_seed(3))
    init_weights(small, torch.Generator().manual_seed(3), INIT_SCALES["small"])
    torch.testing.assert_close(small.conv1.weight, default.conv1.weight * 0.1)
    torch.testing.assert_close(small.conv2.weight, default.conv2.weight * 0.1)
    assert small.conv1.weight.abs().max() <= 0.02
    torch.testing.assert_close(small.fc1.weight, default.fc1.weight)  # the classifier starts as PyTorch's
    torch.testing.assert_close(small.conv1.bias, default.conv1.bias)


def test_the_default_init_shrinks_the_first_conv_layer_only() -> None:
    """`small-first`: the filters a person watches start near zero; the deeper ones at PyTorch's scale."""
    assert TrainConfig().init == "small-first"
    default, first = build_model("classic", 3, 28, 8), build_model("classic", 3, 28, 8)
    init_weights(default, torch.Generator().manual_seed(3))
    init_weights(first, torch.Generator().manual_seed(3), INIT_SCALES["small-first"])
    torch.testing.assert_close(first.conv1.weight, default.conv1.weight * 0.1)
    torch.testing.assert_close(first.conv2.weight, default.conv2.weight)
    torch.testing.assert_close(first.conv3.weight, default.conv3.weight)
