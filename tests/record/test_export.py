"""The export encoders: the weights of every snapshot as .npz, and a layer's filters as an animated GIF."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from filterscope.record.export import MAX_GIF_FRAMES, NothingToExport, filters_gif, grid_image, weights_npz
from filterscope.streaming.codec import decode_frame, encode_snapshot
from filterscope.training.config import TrainConfig
from filterscope.training.engine import Engine
from filterscope.training.snapshots import Snapshot


@pytest.fixture(scope="module")
def frames() -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []

    def keep(event: object) -> None:
        if isinstance(event, Snapshot):
            out.append((event.seq, encode_snapshot(event)))

    engine = Engine(TrainConfig(dataset="shapes-color", epochs=1, batch_size=128), emit=keep)
    engine.start()
    assert engine.join(120)
    return out


def test_the_npz_holds_every_layer_at_every_snapshot(frames: list[tuple[int, bytes]]) -> None:
    z = np.load(io.BytesIO(weights_npz(frames)))
    assert z["conv1.weight"].shape == (len(frames), 8, 3, 5, 5) and z["conv1.weight"].dtype == np.float32
    assert z["conv2.weight"].shape == (len(frames), 32, 8, 5, 5)
    assert list(z["seq"]) == [seq for seq, _ in frames] and z["step"][0] == 0
    _, arrays = decode_frame(frames[-1][1])
    assert np.array_equal(z["conv2.weight"][-1], arrays["layers.1.weight"])  # the frame's values exactly


def test_the_gif_has_a_frame_per_snapshot_on_one_colour_scale(frames: list[tuple[int, bytes]]) -> None:
    gif = Image.open(io.BytesIO(filters_gif(frames, "conv1")))
    assert gif.n_frames == len(frames) and gif.size[0] >= 320
    gif.seek(0)
    first = np.asarray(gif.convert("RGB")).astype(int)
    gif.seek(gif.n_frames - 1)
    last = np.asarray(gif.convert("RGB")).astype(int)
    # Small initial weights on the run's scale are near white; the trained filters are coloured.
    kernels = (first != 58).any(axis=2)  # not the grey between tiles
    assert np.abs(last[kernels] - 247).mean() > 2 * np.abs(first[kernels] - 247).mean()


def test_a_long_run_is_sampled_and_bad_layers_are_named(frames: list[tuple[int, bytes]]) -> None:
    many = [frames[i % len(frames)] for i in range(MAX_GIF_FRAMES + 50)]
    assert Image.open(io.BytesIO(filters_gif(many, "conv1"))).n_frames == MAX_GIF_FRAMES
    with pytest.raises(NothingToExport, match="no conv layer 'conv7'; its layers are conv1, conv2"):
        filters_gif(frames, "conv7")
    with pytest.raises(NothingToExport, match="no snapshot yet"):
        weights_npz([])


def test_a_grid_tiles_every_filter_with_its_channels() -> None:
    w = np.zeros((4, 2, 3, 3), np.float32)
    w[1, 1] = 1.0  # one channel of one filter all positive: dark red somewhere, nothing else red
    image = grid_image(w, 1.0)
    red = (image[..., 0] > 90) & (image[..., 0] < 120) & (image[..., 1] < 10)
    zoom = round(float(np.sqrt(red.sum() / 9)))  # one 3x3 kernel, each entry a zoom x zoom square
    assert zoom >= 2 and red.sum() == 9 * zoom * zoom
