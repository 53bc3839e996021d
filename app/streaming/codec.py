"""Binary frames for snapshots and JSON texts for everything else (docs/protocol.md, version 2).

Torch-free: a client decodes frames with this module, `protocol.py` and NumPy alone.

A snapshot of `tiny` is about 6,600 kernel entries x 3 tensors plus 6,600 feature-map values: as JSON lists
of floats that would be ~350 KB; as int16 (weights, dW, updates) and uint8 (feature maps) it is ~49 KB.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..training.events import EpochSummary, ErrorEvent, StatusEvent, StepsEvent, WarningEvent
from .protocol import (
    PROTOCOL_VERSION,
    Epoch,
    Error,
    StatusChange,
    Steps,
    TextMessage,
    WarningMessage,
    finite,
    nulls,
    significant4,
)

if TYPE_CHECKING:  # encoding takes a training snapshot; decoding needs neither torch nor the training code
    from ..training.snapshots import Snapshot

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
        if not math.isfinite(scale):  # a diverged run's weights: sent as zeros, the loss says why
            scale = 0.0
        q = np.zeros(a.shape, "<i2") if scale == 0 else np.round(a * (Q16 / scale)).astype("<i2")
        return self._add(q.tobytes(), {"shape": list(a.shape), "dtype": "q16", "scale": scale})

    def u8(self, a: np.ndarray) -> dict[str, Any]:
        """uint8 with (lo, hi) per entry of the first axis: each feature map keeps its own contrast."""
        flat = np.nan_to_num(a.reshape(a.shape[0], -1).astype(np.float32), posinf=0.0, neginf=0.0)  # (C, H*W)
        lo, hi = flat.min(axis=1), flat.max(axis=1)
        span = np.where(hi > lo, hi - lo, 1.0)
        q = np.round((flat - lo[:, None]) * (255.0 / span[:, None])).astype(np.uint8)
        return self._add(q.tobytes(), {"shape": list(a.shape), "dtype": "u8",
                                       "lo": [float(v) for v in lo], "hi": [float(v) for v in hi]})

    def q8s(self, a: np.ndarray) -> dict[str, Any]:
        """int8 with two scales per entry of the first axis, its largest negative and positive magnitudes:
        zero and sign exact, each side to 1/127 of its own extreme (a map mostly negative before ReLU keeps the
        detail of its positive part)."""
        flat = np.nan_to_num(a.reshape(a.shape[0], -1).astype(np.float32), posinf=0.0, neginf=0.0)  # (C, H*W)
        # Scales to 4 significant digits (the values keep 1/127 anyway): a smaller header.
        pos = significant4(flat.max(axis=1, initial=0.0)).tolist()
        neg = significant4(-flat.min(axis=1, initial=0.0)).tolist()
        p, n = np.array(pos, np.float32), np.array(neg, np.float32)
        up = np.divide(127.0, p, out=np.zeros_like(p), where=p > 0)[:, None]
        down = np.divide(127.0, n, out=np.zeros_like(n), where=n > 0)[:, None]
        q = np.clip(np.round(np.where(flat > 0, flat * up, flat * down)), -127, 127).astype(np.int8)
        return self._add(q.tobytes(), {"shape": list(a.shape), "dtype": "q8s", "neg": neg, "pos": pos})

    def f32(self, a: np.ndarray) -> dict[str, Any]:
        """float32 little-endian, exact."""
        return self._add(np.ascontiguousarray(a, "<f4").tobytes(), {"shape": list(a.shape), "dtype": "f32"})

    def raw_u8(self, a: np.ndarray) -> dict[str, Any]:
        """uint8 as is (pixels)."""
        return self._add(np.ascontiguousarray(a, np.uint8).tobytes(), {"shape": list(a.shape), "dtype": "u8"})

    def finish(self, header: dict[str, Any]) -> bytes:
        """Header length, header (space-padded so the payload starts 4-byte aligned), payload."""
        # No NaN in the header, ever: a browser's JSON.parse refuses it (null stands for a missing number).
        encoded = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
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
            # After a ReLU the feature map is max(0, preact) exactly: the client derives it, at no cost in bytes.
            "preact": frame.q8s(layer.preact),
            "fmap": {"shape": list(layer.fmap.shape), "dtype": "relu", "of": "preact"} if layer.relu
            else frame.u8(layer.fmap),
            "activation": "relu" if layer.relu else "other",
            "pool": layer.pool,
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
                  "probs": [finite(round(float(p), 6)) for p in snap.probs]},
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
    for i, layer in enumerate(header.get("layers", [])):
        spec = layer.get("fmap", {})
        if spec.get("dtype") == "relu":  # derived from the layer's pre-activation maps, not carried
            arrays[f"layers.{i}.fmap"] = np.maximum(arrays[f"layers.{i}.{spec['of']}"], 0)
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
    if meta["dtype"] == "q8s":
        s8 = np.frombuffer(payload, np.int8, count, meta["offset"]).astype(np.float32).reshape(shape[0], -1)
        pos = np.array(meta["pos"], np.float32)[:, None] / 127
        neg = np.array(meta["neg"], np.float32)[:, None] / 127
        return np.where(s8 > 0, s8 * pos, s8 * neg).reshape(shape)
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


Textual = StepsEvent | EpochSummary | StatusEvent | ErrorEvent | WarningEvent


def to_message(event: Textual) -> TextMessage:
    """The protocol message for a non-snapshot engine event."""
    if isinstance(event, StepsEvent):
        # Update ratios to 4 significant digits (a chart's worth): a third of the text.
        ratios = {k: nulls(significant4(np.asarray(v, np.float64))) for k, v in event.ratios.items()}
        return Steps(list(event.steps), [finite(x) for x in event.losses], ratios)
    if isinstance(event, EpochSummary):
        return Epoch(epoch=event.epoch, step=event.step, train_loss=finite(event.train_loss),
                     test_loss=finite(event.test_loss), test_accuracy=finite(event.test_accuracy), lr=event.lr,
                     wall_time=event.wall_time,
                     train_accuracy=finite(event.train_accuracy))
    if isinstance(event, StatusEvent):
        return StatusChange(event.status.value, event.message, event.epoch, event.step, event.lr, event.samples_seen)
    if isinstance(event, WarningEvent):
        return WarningMessage(event.kind, event.step, event.message)
    if isinstance(event, ErrorEvent):
        return Error(event.message)
    raise TypeError(f"no text message for {type(event).__name__}")


def encode_event(event: Textual) -> str:
    """A text frame for a non-snapshot event."""
    return to_message(event).text()
