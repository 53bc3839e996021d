"""A run's filters to take away: an animated GIF of one layer's filter grid over the run, and every conv
layer's weights at every snapshot as a NumPy .npz file. Both read the stored frames (their q16 precision)."""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image

from app.streaming.codec import decode_array

MAX_GIF_FRAMES = 300  # evenly sampled past this: a GIF of a long run stays a few MB and plays in seconds
MIN_WIDTH = 320  # pixels: small layers are zoomed in to at least this
GAP = 1  # pixels between kernels, in kernel entries before the zoom
# ColorBrewer RdBu reversed, as the page draws filters: blue negative, white zero, red positive.
STOPS = np.array([[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240], [247, 247, 247],
                  [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]], np.float32)


class NothingToExport(LookupError):
    """No snapshot yet, or no such layer."""


def _parse(data: bytes) -> tuple[dict[str, Any], memoryview]:
    (length,) = struct.unpack_from("<I", data, 0)
    return json.loads(data[4:4 + length]), memoryview(data)[4 + length:]


def _weights(frames: Iterable[tuple[int, bytes]], layer: str | None,
             ) -> tuple[list[dict[str, Any]], dict[str, list[np.ndarray]]]:
    refs: list[dict[str, Any]] = []
    weights: dict[str, list[np.ndarray]] = {}
    for _seq, data in frames:
        header, payload = _parse(data)
        names = [x["name"] for x in header["layers"]]
        if layer is not None and layer not in names:
            raise NothingToExport(f"This run has no conv layer {layer!r}; its layers are {', '.join(names)}.")
        refs.append({k: header[k] for k in ("seq", "step", "epoch")})
        for entry in header["layers"]:
            if layer is None or entry["name"] == layer:
                weights.setdefault(entry["name"], []).append(decode_array(payload, entry["weight"]))
    if not refs:
        raise NothingToExport("This run has no snapshot yet.")
    return refs, weights


def weights_npz(frames: Iterable[tuple[int, bytes]]) -> bytes:
    """`{layer}.weight` (snapshots, out, in, kh, kw) float32 for every conv layer, plus `seq`, `step`, `epoch`."""
    refs, weights = _weights(frames, None)
    arrays: dict[str, np.ndarray] = {f"{name}.weight": np.stack(ws).astype(np.float32) for name, ws in weights.items()}
    for key in ("seq", "step", "epoch"):
        arrays[key] = np.array([r[key] for r in refs], np.int64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _colour(values: np.ndarray) -> np.ndarray:
    """Values in [-1, 1] to RGB bytes on the diverging map."""
    x = (np.clip(values, -1, 1) + 1) / 2 * (len(STOPS) - 1)
    k = np.minimum(len(STOPS) - 2, np.floor(x).astype(int))
    f = (x - k)[..., None]
    rgb: np.ndarray = np.round(STOPS[k] + f * (STOPS[k + 1] - STOPS[k])).astype(np.uint8)
    return rgb


def grid_image(weight: np.ndarray, scale: float) -> np.ndarray:
    """One layer's filters (out, in, kh, kw) as an RGB mosaic: a tile per filter, its input channels inside it."""
    out, inc, kh, kw = weight.shape
    sub = math.ceil(math.sqrt(inc))  # channels per tile row
    tile_h, tile_w = math.ceil(inc / sub) * (kh + GAP) - GAP, sub * (kw + GAP) - GAP
    cols = math.ceil(math.sqrt(out * tile_h / tile_w))
    rows = math.ceil(out / cols)
    canvas = np.full((rows * (tile_h + 2 * GAP) + GAP, cols * (tile_w + 2 * GAP) + GAP, 3), 58, np.uint8)
    rgb = _colour(weight / scale if scale > 0 else weight * 0)
    for f in range(out):
        oy, ox = (f // cols) * (tile_h + 2 * GAP) + 2 * GAP, (f % cols) * (tile_w + 2 * GAP) + 2 * GAP
        for c in range(inc):
            y, x = oy + (c // sub) * (kh + GAP), ox + (c % sub) * (kw + GAP)
            canvas[y:y + kh, x:x + kw] = rgb[f, c]
    zoom = max(2, min(16, math.ceil(MIN_WIDTH / canvas.shape[1])))
    return canvas.repeat(zoom, 0).repeat(zoom, 1)


def filters_gif(frames: Iterable[tuple[int, bytes]], layer: str, frame_ms: int = 80) -> bytes:
    """An animated GIF of `layer`'s filters at every snapshot (at most MAX_GIF_FRAMES, evenly sampled), on one
    colour scale over the whole run, so that filters that grow look it."""
    refs, weights = _weights(frames, layer)
    stack = weights[layer]
    if len(stack) > MAX_GIF_FRAMES:
        keep = np.unique(np.linspace(0, len(stack) - 1, MAX_GIF_FRAMES).round().astype(int))
        stack = [stack[i] for i in keep]
    scale = max(float(np.abs(w).max()) for w in stack)
    images = [Image.fromarray(grid_image(w, scale)) for w in stack]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0,
                   optimize=False)
    return buf.getvalue()
