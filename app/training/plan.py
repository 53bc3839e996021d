"""What a config asks for, known before anything trains: its data set checked, its layers' geometry."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .config import TrainConfig
from .datasets import DatasetInfo, get_dataset
from .loop import train_count
from .models import build_model, conv_layers, feature_shapes
from .transfer import check_freeze


@dataclass(frozen=True)
class LayerInfo:
    """A conv layer's geometry, known before training starts."""

    name: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    fmap: tuple[int, int, int]  # (C, H, W) for one input image
    pool: dict[str, object] | None = None  # the pooling after its activation (ConvLayer.pool_info), if any


def check(config: TrainConfig) -> DatasetInfo:
    """What a config asks of its data set, checked before anything is built (ValueError with a sentence)."""
    info = get_dataset(config.dataset).info
    if config.probe_index >= info.test_count:
        raise ValueError(f"probe_index {config.probe_index} is out of range: the {config.dataset} test set "
                         f"has {info.test_count} images (0-{info.test_count - 1}).")
    train_count(config, info)
    if config.freeze and config.init_from is None:  # with a start, the fit is checked with the source's weights
        check_freeze(build_model(config.model, info.channels, info.size, len(info.classes)), config.freeze, None)
    return info


def layer_infos(model: nn.Module, info: DatasetInfo) -> list[LayerInfo]:
    """Every conv layer's geometry for inputs of data set `info`."""
    shapes = feature_shapes(model, info.channels, info.size)
    return [LayerInfo(c.name, c.conv.in_channels, c.conv.out_channels,
                      (int(c.conv.kernel_size[0]), int(c.conv.kernel_size[1])), shapes[c.name], c.pool_info())
            for c in conv_layers(model)]
