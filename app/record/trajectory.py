"""One filter over a whole run: its W, dW and ΔW at every snapshot, cut from the stored frames.

A page charting a kernel's entries over time needs one answer, not one frame per snapshot: for a `tiny`
conv2 filter that is 8x5x5 entries x 3 tensors x ~90 snapshots, 210 KB as float32, against ~4 MB of frames.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..streaming.codec import Q16, Frame
from ..streaming.protocol import PROTOCOL_VERSION

KINDS = ("weight", "grad", "update")


class NoSuchFilter(LookupError):
    """The run has no such layer, or the layer no such filter."""


def _filter_values(payload: memoryview, meta: dict[str, Any], index: int) -> np.ndarray:
    """Filter `index` of a q16 (O, I, kh, kw) array, as float32 (I, kh, kw)."""
    shape = meta["shape"]
    size = int(np.prod(shape[1:]))
    q = np.frombuffer(payload, "<i2", size, meta["offset"] + 2 * index * size)
    return (q.astype(np.float32) * (float(meta["scale"]) / Q16)).reshape(shape[1:])


def trajectory(frames: Iterable[tuple[int, bytes]], layer: str, index: int, run_id: str) -> bytes:
    """A binary frame (docs/protocol.md) with `weight`, `grad`, `update`, each (S, I, kh, kw) float32."""
    refs: list[dict[str, Any]] = []
    series: dict[str, list[np.ndarray]] = {k: [] for k in KINDS}
    shape: list[int] | None = None
    for _seq, data in frames:
        (length,) = struct.unpack_from("<I", data, 0)
        header = json.loads(data[4:4 + length])
        payload = memoryview(data)[4 + length:]
        found = next((x for x in header["layers"] if x["name"] == layer), None)
        if found is None:
            raise NoSuchFilter(f"This run has no conv layer {layer!r}; its layers are "
                               f"{', '.join(x['name'] for x in header['layers'])}.")
        count = found["weight"]["shape"][0]
        if not 0 <= index < count:
            raise NoSuchFilter(f"Layer {layer} has {count} filters (0-{count - 1}); there is no filter {index}.")
        shape = found["weight"]["shape"][1:]
        refs.append({k: header[k] for k in ("seq", "step", "epoch", "epoch_end")})
        for kind in KINDS:
            series[kind].append(_filter_values(payload, found[kind], index))
    if shape is None:
        raise NoSuchFilter("This run has no snapshot yet.")
    frame = Frame()
    arrays = {kind: frame.f32(np.stack(series[kind])) for kind in KINDS}
    header = {"type": "trajectory", "v": PROTOCOL_VERSION, "run": run_id, "layer": layer, "filter": index,
              "shape": shape, "snapshots": refs, **arrays}
    return frame.finish(header)
