"""Binary frames for snapshots and JSON texts for everything else (docs/protocol.md, version 1).

A snapshot of `tiny` is about 6,600 kernel entries x 3 tensors plus 6,600 feature-map values: as JSON lists
of floats that would be ~350 KB; as int16 (weights, dW, updates) and uint8 (feature maps) it is ~49 KB.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import time
from typing import Any

import numpy as np

from app.streaming.protocol import PROTOCOL_VERSION, Epoch, Error, StatusChange, Steps, TextMessage, finite
from app.training.engine import EpochSummary, ErrorEvent, StatusEvent, StepsEvent
from app.training.snapshots import Snapshot

Q16 = 32767


class Frame:
    """Collects arrays into one payload, each at a 4-byte-aligned offset, and writes the header last."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def _add(self, data: bytes, meta: dict[str, Any]) -> dict[str, Any]:
        meta["offset"] = self.size  # from the start of the payload
        self.chunks.append(data)
        self.size += len(data)
        pad = -len(data) % 4
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad
        return meta

    def q16(self, a: np.ndarray) -> dict[str, Any]:
        """int16 with one scale = max |a|: exact zero and sign, 3e-5 relative precision."""
        scale = float(np.abs(a).max()) if a.size else 0.0
        q = np.zeros(a.shape, "<i2") if scale == 0 or not math.isfinite(scale) else \
            np.round(a * (Q16 / scale)).astype("<i2")
        return self._add(q.tobytes(), {"shape": list(a.shape), "dtype": "q16", "scale": scale})

    def u8(self, a: np.ndarray) -> dict[str, Any]:
        """uint8 with (lo, hi) per entry of the first axis: each feature map keeps its own contrast."""
        flat = a.reshape(a.shape[0], -1).astype(np.float32)  # (C, H*W)
        lo, hi = flat.min(axis=1), flat.max(axis=1)
        span = np.where(hi > lo, hi - lo, 1.0)
        q = np.round((flat - lo[:, None]) * (255.0 / span[:, None])).astype(np.uint8)
        return self._add(q.tobytes(), {"shape": list(a.shape), "dtype": "u8",
                                       "lo": [float(v) for v in lo], "hi": [float(v) for v in hi]})

    def f32(self, a: np.ndarray) -> dict[str, Any]:
        """float32 little-endian, exact."""
        return self._add(np.ascontiguousarray(a, "<f4").tobytes(), {"shape": list(a.shape), "dtype": "f32"})

    def raw_u8(self, a: np.ndarray) -> dict[str, Any]:
        """uint8 as is (pixels)."""
        return self._add(np.ascontiguousarray(a, np.uint8).tobytes(), {"shape": list(a.shape), "dtype": "u8"})

    def finish(self, header: dict[str, Any]) -> bytes:
        """Header length, header (space-padded so the payload starts 4-byte aligned), payload."""
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 4)
        return struct.pack("<I", len(encoded)) + encoded + b"".join(self.chunks)


def encode_snapshot(snap: Snapshot) -> bytes:
    """One snapshot as a binary frame."""
    frame = Frame()
    layers = []
    for layer in snap.layers:
        layers.append({
            "name": layer.name,
            "weight": frame.q16(layer.weight),
            "grad": frame.q16(layer.grad),
            "update": frame.q16(layer.update),
            "fmap": frame.u8(layer.fmap),
            "measures": layer.measures.as_dict(),
            "peaks": {k: finite(v) for k, v in layer.peaks.items()},
        })
    probe = snap.probe
    header = {
        "type": "snapshot", "v": PROTOCOL_VERSION, "seq": snap.seq, "step": snap.step, "epoch": snap.epoch,
        "samples_seen": snap.samples_seen, "loss": finite(snap.loss), "lr": snap.lr,
        "elapsed": round(snap.elapsed, 3), "instrument_seconds": round(snap.instrument_seconds, 4),
        "epoch_end": snap.epoch_end,
        "sent_at": time.time(),  # Unix time of encoding: a client on the same clock measures its latency
        "probe": {"index": probe.index, "label": probe.label, "source": probe.source,
                  "pixels": frame.raw_u8(probe.pixels),
                  "probs": [round(float(p), 6) for p in snap.probs]},
        "layers": layers,
    }
    return frame.finish(header)


def decode_frame(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parse a binary frame into its header and every array by dotted path (e.g. "layers.0.weight")."""
    (length,) = struct.unpack_from("<I", data, 0)
    header = json.loads(data[4:4 + length])
    payload = memoryview(data)[4 + length:]
    arrays: dict[str, np.ndarray] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and "dtype" in node and "offset" in node:
            arrays[path] = decode_array(payload, node)
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}.{i}")

    walk(header, "")
    return header, arrays


def decode_array(payload: bytes | memoryview, meta: dict[str, Any]) -> np.ndarray:
    """One array of a frame's payload, as float32 values (or the raw bytes for plain u8)."""
    shape = tuple(meta["shape"])
    count = int(np.prod(shape)) if shape else 1
    if meta["dtype"] == "q16":
        q = np.frombuffer(payload, "<i2", count, meta["offset"]).astype(np.float32)
        scale = float(meta["scale"]) / Q16
        return (q * scale).reshape(shape)
    if meta["dtype"] == "f32":
        return np.frombuffer(payload, "<f4", count, meta["offset"]).reshape(shape)
    if meta["dtype"] == "u8":
        q = np.frombuffer(payload, np.uint8, count, meta["offset"]).reshape(shape)
        if "lo" not in meta:
            return q
        lo = np.array(meta["lo"], np.float32).reshape((-1,) + (1,) * (len(shape) - 1))
        hi = np.array(meta["hi"], np.float32).reshape(lo.shape)
        return lo + q.astype(np.float32) / 255 * (hi - lo)
    raise ValueError(f"unknown dtype {meta['dtype']!r}")


def encode_u8_json(a: np.ndarray) -> dict[str, Any]:
    """A feature-map stack for a JSON answer: the snapshot's u8 encoding with the bytes in base64."""
    frame = Frame()
    meta = frame.u8(a)
    meta.pop("offset")
    meta["data"] = base64.b64encode(b"".join(frame.chunks)[: int(np.prod(a.shape))]).decode()
    return meta


def to_message(event: StepsEvent | EpochSummary | StatusEvent | ErrorEvent) -> TextMessage:
    """The protocol message for a non-snapshot engine event."""
    if isinstance(event, StepsEvent):
        return Steps(list(event.steps), [finite(x) for x in event.losses])
    if isinstance(event, EpochSummary):
        return Epoch(epoch=event.epoch, step=event.step, train_loss=finite(event.train_loss),
                     test_loss=finite(event.test_loss), test_accuracy=finite(event.test_accuracy), lr=event.lr,
                     wall_time=event.wall_time)
    if isinstance(event, StatusEvent):
        return StatusChange(event.status.value, event.message, event.epoch, event.step, event.lr)
    return Error(event.message)


def encode_event(event: StepsEvent | EpochSummary | StatusEvent | ErrorEvent) -> str:
    """A text frame for a non-snapshot event."""
    return to_message(event).text()
