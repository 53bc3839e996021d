"""Receptive fields on the graph that runs (training/fields.py): the published VGG-16 table, and for branching,
functional, grouped, dilated, strided and non-square nets, the box that a brute-force measurement finds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from filterscope.training.fields import graph_fields
from tests.watching.nets import NETS

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
# Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional Neural Networks" (Distill, 2019), table 1.
PUBLISHED = {"conv1_1": 3, "pool1": 6, "conv2_1": 10, "pool2": 16, "conv3_1": 24, "pool3": 44, "conv4_1": 60,
             "pool4": 100, "conv5_1": 132, "pool5": 212}


def vgg16() -> tuple[nn.Module, dict[str, nn.Module]]:
    layers: list[nn.Module] = []
    named: dict[str, nn.Module] = {}
    channels, block, index = 3, 1, 1
    for v in VGG16:
        if v == "M":
            pool = nn.MaxPool2d(2, 2)
            layers.append(pool)
            named[f"pool{block}"] = pool
            block, index = block + 1, 1
        else:
            conv = nn.Conv2d(channels, int(v), 3, padding=1)
            layers += [conv, nn.ReLU(inplace=True)]
            named[f"conv{block}_{index}"] = conv
            channels, index = int(v), index + 1
    return nn.Sequential(*layers), named


def test_vgg16_gives_the_published_receptive_fields_and_stride() -> None:
    model, named = vgg16()
    fields = graph_fields(model, named, (3, 224, 224))
    assert {name: fields[name].size for name in PUBLISHED} == PUBLISHED
    assert fields["pool5"].jump == 32


def measured_box(model: nn.Module, conv: nn.Module, shape: tuple[int, int, int]) -> tuple[tuple[int, int, int, int],
                                                                                       tuple[int, int]]:
    """The input pixels whose change moves `conv`'s output at its central position, as a box (y0, x0, y1, x1),
    found by changing each pixel in turn, with every weight positive so that no path is switched off."""
    seen: dict[str, torch.Tensor] = {}
    handle = conv.register_forward_hook(lambda _m, _i, out: seen.update(out=out))
    c, h, w = shape
    base = torch.ones((1, c, h, w))
    bumped = base.repeat(h * w, 1, 1, 1)
    bumped.view(h * w, c, h * w)[torch.arange(h * w), :, torch.arange(h * w)] += 1000.0
    with torch.no_grad():
        model(base)
        ref = seen["out"][0, 0]
        cy, cx = ref.shape[0] // 2, ref.shape[1] // 2
        model(bumped)
    handle.remove()
    moved = (seen["out"][:, 0, cy, cx] - ref[cy, cx]).abs() > 1e-3
    ys, xs = (torch.nonzero(moved.view(h, w), as_tuple=True))
    return (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1), (cy, cx)


@pytest.mark.parametrize("arch", sorted(NETS))
def test_every_conv_field_is_the_box_a_brute_force_measurement_finds(arch: str) -> None:
    model_class, shape, _ = NETS[arch]
    torch.manual_seed(0)
    model = model_class().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.abs_().add_(0.01)
                if module.bias is not None:
                    module.bias.zero_()
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    fields = graph_fields(model, convs, shape)
    assert set(fields) == set(convs)
    for name, conv in convs.items():
        box, (cy, cx) = measured_box(model, conv, shape)
        expected = fields[name].boxes(torch.tensor(cy).numpy(), torch.tensor(cx).numpy(), (shape[1], shape[2]))
        assert tuple(int(v) for v in expected) == box, name
    if arch == "odd":  # a 1x7 kernel: a field wider than it is tall
        assert fields["wide"].sizes == (1, 7)
