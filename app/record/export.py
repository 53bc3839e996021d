"""A run's filters to take away: an animated GIF of one layer's filter grid over the run, and every conv
layer's weights at every snapshot as a NumPy .npz file. Both read the stored frames (their q16 precision).

Both are written to a file as the frames are read, one frame in memory at a time: built in memory, the 68 MB
npz of a 1,251-snapshot `classic` run added 850 MB to the server's RSS (now 57 MB, bench/bench_exports.py).
The GIF's frames are drawn straight in a fixed palette (the colour map's 255 steps and the grey between
tiles), so no frame is quantised.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from ..streaming.codec import decode_array

MAX_GIF_FRAMES = 300  # evenly sampled past this: a GIF of a long run stays a few MB and plays in seconds
MIN_WIDTH = 320  # pixels: small layers are zoomed in to at least this
GAP = 1  # pixels between kernels, in kernel entries before the zoom
# ColorBrewer RdBu reversed, as the page draws filters: blue negative, white zero, red positive.
STOPS = np.array([[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240], [247, 247, 247],
                  [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]], np.float32)
GREY = 58  # between tiles
LEVELS = 255  # a GIF's palette: the colour map in 255 steps (zero exactly on one), and the grey
# Deflate level 1: the npz of a long `classic` run is made in a fraction of the time of numpy's default (6), for
# a file a few per cent larger (q16 values in float32 compress little either way).
NPZ_LEVEL = 1
CHUNK = 1 << 20  # bytes copied at a time into the npz


class NothingToExport(LookupError):
    """No snapshot yet, or no such layer."""


def _parse(data: bytes) -> tuple[dict[str, Any], memoryview]:
    (length,) = struct.unpack_from("<I", data, 0)
    return json.loads(data[4:4 + length]), memoryview(data)[4 + length:]


def _layer_weights(frames: Iterable[tuple[int, bytes]], layer: str | None,
                   ) -> Iterator[tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """Each frame's (seq, step, epoch) and its conv layers' weights (only `layer`'s if given), one at a time."""
    for _seq, data in frames:
        header, payload = _parse(data)
        names = [x["name"] for x in header["layers"]]
        if layer is not None and layer not in names:
            raise NothingToExport(f"This run has no conv layer {layer!r}; its layers are {', '.join(names)}.")
        yield ({k: header[k] for k in ("seq", "step", "epoch")},
               {x["name"]: decode_array(payload, x["weight"]) for x in header["layers"]
                if layer is None or x["name"] == layer})


def write_npz(frames: Iterable[tuple[int, bytes]], out: IO[bytes], scratch: Path | None = None) -> None:
    """`{layer}.weight` (snapshots, out, in, kh, kw) float32 for every conv layer, plus `seq`, `step`, `epoch`,
    written to `out` as a .npz file. Each layer's values wait in a file in `scratch` (a temporary directory if
    None) until every frame is read, so memory holds one frame, never the run."""
    with tempfile.TemporaryDirectory(dir=scratch, prefix="npz-") as tmp, contextlib.ExitStack() as files:
        spools: dict[str, tuple[IO[bytes], tuple[int, ...]]] = {}
        refs: list[dict[str, Any]] = []
        for ref, weights in _layer_weights(frames, None):
            refs.append(ref)
            for name, w in weights.items():
                if name not in spools:
                    spools[name] = (files.enter_context(open(Path(tmp) / f"{len(spools)}.f32", "w+b")), w.shape)
                spools[name][0].write(np.ascontiguousarray(w, "<f4").tobytes())
        if not refs:
            raise NothingToExport("This run has no snapshot yet.")
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=NPZ_LEVEL, allowZip64=True) as z:
            for name, (spool, shape) in spools.items():
                with z.open(f"{name}.weight.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array_header_1_0(
                        member, {"descr": "<f4", "fortran_order": False, "shape": (len(refs), *shape)})
                    spool.seek(0)
                    shutil.copyfileobj(spool, member, CHUNK)
            for key in ("seq", "step", "epoch"):
                with z.open(f"{key}.npy", "w") as member:
                    np.lib.format.write_array(member, np.array([r[key] for r in refs], np.int64))


def weights_npz(frames: Iterable[tuple[int, bytes]]) -> bytes:
    """write_npz's file as bytes (for small runs and tests; the server writes files)."""
    buf = io.BytesIO()
    write_npz(frames, buf)
    return buf.getvalue()


def _colour(values: np.ndarray) -> np.ndarray:
    """Values in [-1, 1] to RGB bytes on the diverging map."""
    x = (np.clip(values, -1, 1) + 1) / 2 * (len(STOPS) - 1)
    k = np.minimum(len(STOPS) - 2, np.floor(x).astype(int))
    f = (x - k)[..., None]
    rgb: np.ndarray = np.round(STOPS[k] + f * (STOPS[k + 1] - STOPS[k])).astype(np.uint8)
    return rgb


# The GIF palette: LEVELS steps of the colour map from -1 to 1, then the grey (index LEVELS).
PALETTE = np.concatenate([_colour(np.linspace(-1, 1, LEVELS, dtype=np.float32)),
                          np.full((256 - LEVELS, 3), GREY, np.uint8)])


@lru_cache(maxsize=32)
def _layout(shape: tuple[int, int, int, int]) -> tuple[tuple[int, int], np.ndarray, np.ndarray, int]:
    """Where each entry of an (out, in, kh, kw) weight goes in its mosaic: (canvas h, w), the rows and columns
    of every entry (the weight's own shape), and the zoom."""
    out, inc, kh, kw = shape
    sub = math.ceil(math.sqrt(inc))  # channels per tile row
    tile_h, tile_w = math.ceil(inc / sub) * (kh + GAP) - GAP, sub * (kw + GAP) - GAP
    cols = math.ceil(math.sqrt(out * tile_h / tile_w))
    rows = math.ceil(out / cols)
    size = (rows * (tile_h + 2 * GAP) + GAP, cols * (tile_w + 2 * GAP) + GAP)
    f, c = np.arange(out)[:, None, None, None], np.arange(inc)[None, :, None, None]
    i, j = np.arange(kh)[None, None, :, None], np.arange(kw)[None, None, None, :]
    ys = (f // cols) * (tile_h + 2 * GAP) + 2 * GAP + (c // sub) * (kh + GAP) + i
    xs = (f % cols) * (tile_w + 2 * GAP) + 2 * GAP + (c % sub) * (kw + GAP) + j
    zoom = max(2, min(16, math.ceil(MIN_WIDTH / size[1])))
    return size, np.broadcast_to(ys, shape), np.broadcast_to(xs, shape), zoom


def _mosaic(weight: np.ndarray, entries: np.ndarray, fill: Any, dtype: Any) -> np.ndarray:
    """`entries` (weight's shape, optionally with a trailing axis) laid out as the weight's mosaic, zoomed."""
    size, ys, xs, zoom = _layout(tuple(weight.shape))
    canvas = np.full((*size, *entries.shape[4:]), fill, dtype)
    canvas[ys, xs] = entries
    return canvas.repeat(zoom, 0).repeat(zoom, 1)


def grid_image(weight: np.ndarray, scale: float) -> np.ndarray:
    """One layer's filters (out, in, kh, kw) as an RGB mosaic: a tile per filter, its input channels inside it."""
    return _mosaic(weight, _colour(weight / scale if scale > 0 else weight * 0), GREY, np.uint8)


def grid_indices(weight: np.ndarray, scale: float) -> np.ndarray:
    """grid_image's mosaic as indices into PALETTE (the colour map in LEVELS steps, then grey)."""
    values = np.clip(weight / scale, -1, 1) if scale > 0 else np.zeros_like(weight)
    levels = np.round((values + 1) / 2 * (LEVELS - 1)).astype(np.uint8)
    return _mosaic(weight, levels, LEVELS, np.uint8)


def sampled(count: int, most: int = MAX_GIF_FRAMES) -> list[int]:
    """Indices of at most `most` of `count` items, evenly spread, the first and the last among them."""
    if count <= most:
        return list(range(count))
    return [int(i) for i in np.unique(np.linspace(0, count - 1, most).round().astype(int))]


def write_gif(frames: Iterable[tuple[int, bytes]], layer: str, out: IO[bytes], frame_ms: int = 80) -> None:
    """An animated GIF of `layer`'s filters, a GIF frame per frame given (sample them first: `sampled`), on one
    colour scale over them all, so that filters that grow look it."""
    stack = [weights[layer] for _, weights in _layer_weights(frames, layer)]  # one layer: at most a few MB
    if not stack:
        raise NothingToExport("This run has no snapshot yet.")
    scale = max(float(np.abs(w).max()) for w in stack)
    palette = PALETTE.tobytes()

    def image(w: np.ndarray) -> Image.Image:
        im = Image.fromarray(grid_indices(w, scale), mode="P")
        im.putpalette(palette)
        return im

    rest = (image(w) for w in stack[1:])  # drawn as the encoder asks for them
    image(stack[0]).save(out, format="GIF", save_all=True, append_images=rest, duration=frame_ms, loop=0,
                         optimize=False)


def filters_gif(frames: Iterable[tuple[int, bytes]], layer: str, frame_ms: int = 80) -> bytes:
    """write_gif's file as bytes, of at most MAX_GIF_FRAMES of `frames` (evenly sampled; for small runs and
    tests: the server samples the seqs it reads instead)."""
    every = list(frames)
    buf = io.BytesIO()
    write_gif([every[i] for i in sampled(len(every))], layer, buf, frame_ms)
    return buf.getvalue()


def measures_json(headers: Iterable[dict[str, Any]]) -> bytes:
    """Every snapshot's measures per conv layer, how far from its start (step 0: random, or a fine-tuned run's
    pretrained weights) and how smooth, as one JSON document: {seq, step, epoch: [...], layers: {name:
    {moved, cosine_to_start, structure: [...]}}} (docs/protocol.md), from the frames' headers alone."""
    out: dict[str, Any] = {"seq": [], "step": [], "epoch": [], "layers": {}}
    for header in headers:
        for key in ("seq", "step", "epoch"):
            out[key].append(header[key])
        n = len(out["seq"])
        for layer in header["layers"]:
            series = out["layers"].setdefault(layer["name"], {k: [] for k in ("moved", "cosine_to_start", "structure")})
            for key, values in series.items():
                values.extend([None] * (n - 1 - len(values)))  # a layer missing from earlier frames
                values.append(layer.get("measures", {}).get(key))
    if not out["seq"]:
        raise NothingToExport("This run has no snapshot yet.")
    return json.dumps(out, separators=(",", ":")).encode()
