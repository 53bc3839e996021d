"""How a run's frames and checkpoints are kept on disk, losslessly, in fewer bytes than zlib alone.

A frame: zlib of the frame as sent, or, most of the time, of the frame with each layer's W and
pre-activation maps replaced by what the frame before does not already say.

- W. A frame carries W and ΔW = W - W at the previous snapshot, both as int16 codes with a scale each
  (codec.Frame.q16). So W is all but known from the previous frame's W plus this frame's ΔW: predicted that
  way and rounded to this frame's scale, it is off by at most one code in the default run (a quarter of the
  entries, by one). zlib makes that residual of a `tiny` frame's conv2 W ~1 KB instead of ~12.
- The maps. The probe's pre-activation maps (int8 codes with two scales a map, codec.Frame.q8s) change
  little from one moment to the next: the previous frame's, requantised at this frame's scales, leave a
  residual that fits int8 for ~80 % of the layers' maps and compresses to about half.
A default run's frames: 3.67 MB with zlib alone, 2.72 MB so. Nothing is lost: the frame read back is the
frame sent, byte for byte, its ETag included.

A packed frame starts with MAGIC, the previous frame's seq and ETag (the hash of its bytes as sent, so a
reader checks that it predicts from the very frame the writer did) and which layers' maps are residuals,
then zlib of the frame with the residuals in place of the codes (same layout, same header). Every
KEY_EVERY-th frame of a run (sooner for large frames: CHAIN_BYTES), and any whose W residual would not fit
int16, is kept whole: reading a moment inflates at most KEY_EVERY frames, and fewer where the basis of its
predecessor is cached (by ETag: a frame's bytes decide it).
"""

from __future__ import annotations

import json
import math
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..streaming.codec import Q16

MAGIC = b"FSd2"  # a zlib stream starts 0x78: never this
_REF = struct.Struct("<I12sII")  # the previous frame's seq and ETag (blake2b, 12 bytes); the layers whose maps
# are residuals too, and those whose W residual is int8 (a bit each, the first 32 layers)
KEY_EVERY = 8  # a run's frames kept whole: one in this many at least, so a frame damaged on disk takes at most
# the 7 after it with it (every 16th: 0.06 MB less a default run)
# ...and one at least every this many bytes of frames as sent: reading a moment cold inflates and undoes at most
# this much (a `tiny` frame is ~50 KB: every 8th; a `classic` one ~370 KB: every 3rd; a random `classic` moment
# read cold took p95 17 ms at every 8th, against 2.5 ms for one frame).
CHAIN_BYTES = 1 << 20
LEVEL = 1  # zlib level: ~0.6 ms a frame on the writer thread
Q8 = 127  # codec.Frame.q8s: each side of a map to 1/127 of its own extreme

_SNAPSHOT = b'{"type":"snapshot"'  # how codec.encode_snapshot's header starts


@dataclass(frozen=True)
class Basis:
    """What a frame says that the next one is stored against, per conv layer: W's int16 codes and scale, and
    its pre-activation maps' int8 codes and scales (None where the frame does not carry them so)."""

    weight: np.ndarray
    scale: float
    maps: np.ndarray | None
    pos: np.ndarray | None
    neg: np.ndarray | None


Layout = tuple[int, list[dict[str, Any]]]


def _layout(frame: bytes) -> Layout:
    """Where the payload starts, and the layers' headers (ValueError: not a snapshot frame)."""
    (length,) = struct.unpack_from("<I", frame, 0)
    if 4 + length > len(frame) or frame[4:4 + len(_SNAPSHOT)] != _SNAPSHOT:
        raise ValueError("not a snapshot frame")
    return 4 + length, list(json.loads(frame[4:4 + length]).get("layers", []))


def _codes(frame: bytes | bytearray, start: int, meta: dict[str, Any], dtype: str = "<i2") -> np.ndarray:
    return np.frombuffer(frame, dtype, math.prod(meta["shape"]), start + meta["offset"])


def _q8s(meta: Any) -> bool:
    return isinstance(meta, dict) and meta.get("dtype") == "q8s" and "offset" in meta


def basis(frame: bytes, layout: Layout | None = None) -> list[Basis]:
    """What the next frame may be stored against, from a frame as sent (whose `layout` may be known already)."""
    start, layers = layout or _layout(frame)
    out = []
    for layer in layers:
        maps: dict[str, Any] = layer.get("preact") or {}
        carried = _q8s(maps)
        out.append(Basis(_codes(frame, start, layer["weight"]), float(layer["weight"]["scale"]),
                         _codes(frame, start, maps, "i1") if carried else None,
                         np.array(maps["pos"], np.float64) if carried else None,
                         np.array(maps["neg"], np.float64) if carried else None))
    return out


def _weights(before: Basis, update: np.ndarray, update_scale: float, scale: float) -> np.ndarray:
    """W's codes as the previous W plus ΔW say, at this frame's scale: the same float64 operations, in the same
    order, for writer and reader."""
    if scale == 0 or not np.isfinite(scale):
        return np.zeros(update.shape, np.int64)
    w = before.weight.astype(np.float64) * (before.scale / Q16) + update.astype(np.float64) * (update_scale / Q16)
    return np.round(w * (Q16 / scale)).astype(np.int64)


def _maps(before: Basis, meta: Any) -> np.ndarray | None:
    """The maps' codes as the previous frame's maps say, at this frame's scales (the probe's maps change little
    from one moment to the next); None where they cannot say (no maps, another shape)."""
    if before.maps is None or before.pos is None or before.neg is None or not _q8s(meta):
        return None
    channels = before.pos.size
    if before.maps.size != math.prod(meta["shape"]) or len(meta["pos"]) != channels or channels == 0:
        return None
    q = before.maps.reshape(channels, -1).astype(np.float64)
    was = np.where(q > 0, q * (before.pos / Q8)[:, None], q * (before.neg / Q8)[:, None])
    pos, neg = np.array(meta["pos"], np.float64), np.array(meta["neg"], np.float64)
    up = np.divide(Q8, pos, out=np.zeros_like(pos), where=pos > 0)[:, None]
    down = np.divide(Q8, neg, out=np.zeros_like(neg), where=neg > 0)[:, None]
    return np.clip(np.round(np.where(was > 0, was * up, was * down)), -Q8, Q8).astype(np.int64).reshape(-1)


def _fits(before: list[Basis], layers: list[dict[str, Any]]) -> bool:
    return len(before) == len(layers) and all(
        prior.weight.size == math.prod(layer["weight"]["shape"]) == math.prod(layer["update"]["shape"])
        for prior, layer in zip(before, layers, strict=True))


def pack(frame: bytes, previous: tuple[int, bytes, list[Basis]] | None, layout: Layout | None = None) -> bytes:
    """The stored bytes of `frame`: residual against `previous` (its seq, ETag and basis) where given and
    possible, else the frame whole."""
    if previous is not None:
        start, layers = layout or _layout(frame)
        seq, etag, before = previous
        if _fits(before, layers):
            out = bytearray(frame)
            maps_too = small = 0
            for i, (prior, layer) in enumerate(zip(before, layers, strict=True)):
                w, u = layer["weight"], layer["update"]
                residual = _codes(frame, start, w) - _weights(prior, _codes(frame, start, u), u["scale"], w["scale"])
                low, high = (int(residual.min()), int(residual.max())) if residual.size else (0, 0)
                if low < -32768 or high > 32767:
                    break
                at = start + w["offset"]
                if i < 32 and low >= -128 and high <= 127:  # as int8, then zeros: zlib keeps ~half the bytes
                    out[at:at + 2 * residual.size] = residual.astype("i1").tobytes() + bytes(residual.size)
                    small |= 1 << i
                else:
                    out[at:at + 2 * residual.size] = residual.astype("<i2").tobytes()
                predicted = _maps(prior, layer.get("preact")) if i < 32 else None
                if predicted is not None:
                    m = layer["preact"]
                    left = _codes(frame, start, m, "i1") - predicted
                    if left.size and left.min() >= -128 and left.max() <= 127:
                        out[start + m["offset"]:start + m["offset"] + left.size] = left.astype("i1").tobytes()
                        maps_too |= 1 << i
            else:
                return MAGIC + _REF.pack(seq, etag, maps_too, small) + zlib.compress(out, LEVEL)
    return zlib.compress(frame, LEVEL)


def reference(blob: bytes | memoryview) -> tuple[int, bytes] | None:
    """The (seq, ETag) a stored frame predicts from; None for one kept whole."""
    if bytes(blob[:len(MAGIC)]) != MAGIC:
        return None
    seq, etag, _, _ = _REF.unpack_from(blob, len(MAGIC))
    return int(seq), bytes(etag)


def zlib_start(blob: bytes | memoryview) -> int:
    """Where the zlib stream of a stored frame starts."""
    return len(MAGIC) + _REF.size if bytes(blob[:len(MAGIC)]) == MAGIC else 0


def unpack(blob: bytes, before: list[Basis] | None) -> tuple[bytes, Layout | None]:
    """The frame as sent from its stored bytes, and its layout where it was read; `before`: the basis of the
    frame it predicts from (None for a frame kept whole). Raises ValueError if they do not fit it."""
    data = zlib.decompress(memoryview(blob)[zlib_start(blob):])
    if before is None:
        if reference(blob) is not None:
            raise ValueError("the frame it was stored against is missing")
        return data, None
    _, _, maps_too, small = _REF.unpack_from(blob, len(MAGIC))
    layout = _layout(data)
    start, layers = layout
    if not _fits(before, layers):
        raise ValueError("the frame it was stored against does not fit it")
    out = bytearray(data)
    for i, (prior, layer) in enumerate(zip(before, layers, strict=True)):
        w, u = layer["weight"], layer["update"]
        residual = _codes(data, start, w, "i1") if small >> i & 1 else _codes(data, start, w)
        codes = residual.astype(np.int64) + _weights(prior, _codes(data, start, u), u["scale"], w["scale"])
        at = start + w["offset"]
        out[at:at + 2 * codes.size] = codes.astype("<i2").tobytes()
        if maps_too >> i & 1:
            predicted = _maps(prior, layer.get("preact"))
            if predicted is None:
                raise ValueError("the maps it was stored against do not fit it")
            m = layer["preact"]
            maps = _codes(data, start, m, "i1").astype(np.int64) + predicted
            out[start + m["offset"]:start + m["offset"] + maps.size] = maps.astype("i1").tobytes()
    return bytes(out), layout


class Packer:
    """The writer's side: each run's latest stored frame (seq, ETag, basis) and how much since one was kept
    whole. Writer thread only; `forget` after a rolled-back transaction (what it remembers may not be on disk),
    a run's truncation, removal or end."""

    def __init__(self) -> None:
        # Per run: the latest frame's seq, ETag and basis; frames and bytes (as sent) since one was kept whole.
        self._last: dict[str, tuple[int, bytes, list[Basis], int, int]] = {}

    def pack(self, run_id: str, seq: int, etag: bytes, frame: bytes) -> bytes:
        last = self._last.get(run_id)
        try:
            layout = _layout(frame)
            mine = basis(frame, layout)
        except (ValueError, TypeError, KeyError, struct.error):  # not a snapshot frame of codec.py's: kept whole
            self._last.pop(run_id, None)
            return zlib.compress(frame, LEVEL)
        chained, held = 0, len(frame)
        blob = None
        if last is not None and last[0] < seq and last[3] < KEY_EVERY - 1 and last[4] + len(frame) <= CHAIN_BYTES:
            blob = pack(frame, last[:3], layout)
            if reference(blob) is not None:
                chained, held = last[3] + 1, last[4] + len(frame)
        if blob is None:
            blob = pack(frame, None)
        self._last[run_id] = (seq, etag, mine, chained, held)  # views of `frame`, kept with it
        return blob

    def forget(self, run_id: str | None = None) -> None:
        if run_id is None:
            self._last.clear()
        else:
            self._last.pop(run_id, None)


class BasisCache:
    """Recently read frames' bases by ETag (any thread): reading moments in order, or one near the last,
    inflates one frame, not its whole chain."""

    def __init__(self, size: int = 64) -> None:
        self._items: OrderedDict[bytes, list[Basis]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, etag: bytes) -> list[Basis] | None:
        with self._lock:
            found = self._items.get(etag)
            if found is not None:
                self._items.move_to_end(etag)
            return found

    def put(self, etag: bytes, value: list[Basis]) -> None:
        with self._lock:
            self._items[etag] = value
            self._items.move_to_end(etag)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def read_frame(seq: int, blob: bytes, etag: bytes, fetch: Callable[[int], tuple[bytes, bytes] | None],
               cache: BasisCache) -> bytes:
    """Frame `seq` as sent from its stored bytes and ETag; `fetch(seq)` gives another stored frame of the same
    run (blob, ETag) or None. Raises ValueError where the chain is broken."""
    chain: list[tuple[bytes, bytes]] = [(blob, etag)]
    seqs = [seq]
    before: list[Basis] | None = None
    for _ in range(KEY_EVERY + 1):  # walk back to a frame kept whole, or one whose basis is known
        ref = reference(chain[-1][0])
        if ref is None:
            break
        before = cache.get(ref[1])
        if before is not None:
            break
        found = fetch(ref[0])
        if found is None or found[1] != ref[1]:
            raise ValueError(f"snapshot {ref[0]}, which it was stored against, is missing or changed")
        chain.append(found)
        seqs.append(ref[0])
    else:
        raise ValueError("its chain of stored frames is longer than any written")
    frame = b""
    for depth, (stored, tag) in reversed(list(enumerate(chain))):
        try:
            frame, layout = unpack(stored, before)
        except (ValueError, zlib.error) as exc:
            if depth == 0:
                raise
            raise ValueError(f"it is stored against snapshot {seqs[depth]}, which cannot be read: {exc}") from None
        try:
            before = basis(frame, layout)
        except (ValueError, TypeError, KeyError, struct.error):  # not a snapshot frame: none is stored against it
            continue
        cache.put(tag, before)
    return frame


# Checkpoints: torch.save's bytes are mostly float32 arrays (the model, Adam's two moments), whose high bytes
# (sign, exponent) repeat and low bytes do not. Split into four lanes of every fourth byte, zlib finds the
# repeats: a default run's checkpoints take 0.64 MB instead of 0.72 (zlib alone: 0.68), at ~13 ms each on
# the writer thread.
CHECKPOINT_MAGIC = b"FSc1"  # torch.save's zip starts "PK": never this


def pack_checkpoint(data: bytes) -> bytes:
    pad = -len(data) % 4
    lanes = np.frombuffer(data + b"\0" * pad, np.uint8).reshape(-1, 4).T
    return CHECKPOINT_MAGIC + struct.pack("<I", len(data)) + zlib.compress(lanes.tobytes(), LEVEL)


def unpack_checkpoint(blob: bytes) -> bytes:
    """A checkpoint's bytes as its producer made them (stored packed or, before 2026-12, as they were)."""
    if blob[:len(CHECKPOINT_MAGIC)] != CHECKPOINT_MAGIC:
        return blob
    (size,) = struct.unpack_from("<I", blob, len(CHECKPOINT_MAGIC))
    lanes = np.frombuffer(zlib.decompress(memoryview(blob)[len(CHECKPOINT_MAGIC) + 4:]), np.uint8)
    if lanes.size % 4 or lanes.size < size:
        raise ValueError("its packed bytes do not add up")
    return lanes.reshape(4, -1).T.tobytes()[:size]
