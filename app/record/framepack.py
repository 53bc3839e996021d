"""How a run's frames and checkpoints are kept on disk, losslessly, in fewer bytes than zlib alone.

A frame: zlib of the frame as sent, or, most of the time, of the frame with each layer's W replaced by what
its previous frame and its own ΔW do not already say.

A frame carries W and ΔW = W - W at the previous snapshot, both as int16 codes with a scale each
(codec.Frame.q16). So W is all but known from the previous frame's W plus this frame's ΔW: predicted that
way and rounded to this frame's scale, it is off by at most one code in the default run (a quarter of the
entries, by one). Keeping only that residual, zlib makes ~12 KB of a `tiny` frame's conv2 W into ~1 KB: a
default run's frames go from 3.67 to ~2.85 MB, nothing lost (the frame read back is the frame sent, byte for
byte, its ETag included).

A packed frame starts with MAGIC, the previous frame's seq and ETag (the hash of its bytes as sent, so a
reader checks that it predicts from the very frame the writer did), then zlib of the frame with residuals in
place of W's codes (same layout, same header). Every KEY_EVERY-th frame of a run, and any whose residual
would not fit int16, is kept whole: reading a moment inflates at most KEY_EVERY frames, and fewer where the
weights of its predecessor are cached (by ETag: a frame's bytes decide its weights).
"""

from __future__ import annotations

import json
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from ..streaming.codec import Q16

MAGIC = b"FSd1"  # a zlib stream starts 0x78: never this
_REF = struct.Struct("<I12s")  # the previous frame's seq and ETag (blake2b, 12 bytes)
KEY_EVERY = 8  # a run's frames kept whole: one in this many at least, so a frame damaged on disk takes at most
# the 7 after it with it (every 16th: 0.06 MB less a default run)
LEVEL = 1  # zlib level: ~0.6 ms a frame on the writer thread

# Per conv layer: W's int16 codes and W's scale (as the frame carries them).
Weights = list[tuple[np.ndarray, float]]


_SNAPSHOT = b'{"type":"snapshot"'  # how codec.encode_snapshot's header starts


def _layout(frame: bytes) -> tuple[int, list[dict[str, Any]]]:
    """Where the payload starts, and the layers' headers (ValueError: not a snapshot frame)."""
    (length,) = struct.unpack_from("<I", frame, 0)
    if 4 + length > len(frame) or frame[4:4 + len(_SNAPSHOT)] != _SNAPSHOT:
        raise ValueError("not a snapshot frame")
    return 4 + length, list(json.loads(frame[4:4 + length]).get("layers", []))


def _codes(frame: bytes | bytearray, start: int, meta: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(frame, "<i2", int(np.prod(meta["shape"])), start + meta["offset"])


def _predicted(before: tuple[np.ndarray, float], update: np.ndarray, update_scale: float, scale: float,
               ) -> np.ndarray:
    """W's codes as the previous W plus ΔW say, at this frame's scale: the same float64 operations, in the same
    order, for writer and reader."""
    if scale == 0 or not np.isfinite(scale):
        return np.zeros(update.shape, np.int64)
    codes, was = before
    w = codes.astype(np.float64) * (was / Q16) + update.astype(np.float64) * (update_scale / Q16)
    return np.round(w * (Q16 / scale)).astype(np.int64)


def weights(frame: bytes, layout: tuple[int, list[dict[str, Any]]] | None = None) -> Weights:
    """Each layer's W codes and scale in a frame as sent (whose `layout` may be known already)."""
    start, layers = layout or _layout(frame)
    return [(_codes(frame, start, layer["weight"]), float(layer["weight"]["scale"])) for layer in layers]


def _fits(before: Weights, layers: list[dict[str, Any]]) -> bool:
    return len(before) == len(layers) and all(
        codes.size == int(np.prod(layer["weight"]["shape"])) == int(np.prod(layer["update"]["shape"]))
        for (codes, _), layer in zip(before, layers, strict=True))


def pack(frame: bytes, previous: tuple[int, bytes, Weights] | None,
         layout: tuple[int, list[dict[str, Any]]] | None = None) -> bytes:
    """The stored bytes of `frame`: residual against `previous` (its seq, ETag and weights) where given and
    possible, else the frame whole."""
    if previous is not None:
        start, layers = layout or _layout(frame)
        seq, etag, before = previous
        if _fits(before, layers):
            out = bytearray(frame)
            for prior, layer in zip(before, layers, strict=True):
                w, u = layer["weight"], layer["update"]
                residual = _codes(frame, start, w) - _predicted(prior, _codes(frame, start, u), u["scale"], w["scale"])
                if residual.size and (residual.min() < -32768 or residual.max() > 32767):
                    break
                at = start + w["offset"]
                out[at:at + 2 * residual.size] = residual.astype("<i2").tobytes()
            else:
                return MAGIC + _REF.pack(seq, etag) + zlib.compress(out, LEVEL)
    return zlib.compress(frame, LEVEL)


def reference(blob: bytes | memoryview) -> tuple[int, bytes] | None:
    """The (seq, ETag) a stored frame predicts from; None for one kept whole."""
    if bytes(blob[:len(MAGIC)]) != MAGIC:
        return None
    seq, etag = _REF.unpack_from(blob, len(MAGIC))
    return int(seq), bytes(etag)


def zlib_start(blob: bytes | memoryview) -> int:
    """Where the zlib stream of a stored frame starts."""
    return len(MAGIC) + _REF.size if bytes(blob[:len(MAGIC)]) == MAGIC else 0


def unpack(blob: bytes, before: Weights | None) -> bytes:
    """The frame as sent from its stored bytes; `before`: the weights of the frame it predicts from (None for
    a frame kept whole). Raises ValueError if they do not fit it."""
    data = zlib.decompress(memoryview(blob)[zlib_start(blob):])
    if before is None:
        if reference(blob) is not None:
            raise ValueError("the frame it was stored against is missing")
        return data
    start, layers = _layout(data)
    if not _fits(before, layers):
        raise ValueError("the frame it was stored against does not fit it")
    out = bytearray(data)
    for prior, layer in zip(before, layers, strict=True):
        w, u = layer["weight"], layer["update"]
        codes = _codes(data, start, w).astype(np.int64) + _predicted(prior, _codes(data, start, u), u["scale"],
                                                                     w["scale"])
        at = start + w["offset"]
        out[at:at + 2 * codes.size] = codes.astype("<i2").tobytes()
    return bytes(out)


class Packer:
    """The writer's side: each run's latest stored frame (seq, ETag, weights) and how many frames since one
    was kept whole. Writer thread only; `reset` after a rolled-back transaction (what it remembers may not be
    on disk) or a run's truncation or removal."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, bytes, Weights, int]] = {}

    def pack(self, run_id: str, seq: int, etag: bytes, frame: bytes) -> bytes:
        last = self._last.get(run_id)
        try:
            layout = _layout(frame)
            mine = weights(frame, layout)
        except (ValueError, TypeError, KeyError, struct.error):  # not a snapshot frame of codec.py's: kept whole
            self._last.pop(run_id, None)
            return zlib.compress(frame, LEVEL)
        chained = 0
        blob = None
        if last is not None and last[0] < seq and last[3] < KEY_EVERY - 1:
            blob = pack(frame, last[:3], layout)
            chained = last[3] + 1 if reference(blob) is not None else 0
        if blob is None:
            blob = pack(frame, None)
        self._last[run_id] = (seq, etag, mine, chained)  # views of `frame`, kept with it
        return blob

    def forget(self, run_id: str | None = None) -> None:
        if run_id is None:
            self._last.clear()
        else:
            self._last.pop(run_id, None)


class WeightsCache:
    """Recently read frames' weights by ETag (any thread): reading moments in order, or one near the last,
    inflates one frame, not its whole chain."""

    def __init__(self, size: int = 64) -> None:
        self._items: OrderedDict[bytes, Weights] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, etag: bytes) -> Weights | None:
        with self._lock:
            found = self._items.get(etag)
            if found is not None:
                self._items.move_to_end(etag)
            return found

    def put(self, etag: bytes, value: Weights) -> None:
        with self._lock:
            self._items[etag] = value
            self._items.move_to_end(etag)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def read_frame(seq: int, blob: bytes, etag: bytes, fetch: Callable[[int], tuple[bytes, bytes] | None],
               cache: WeightsCache) -> bytes:
    """Frame `seq` as sent from its stored bytes and ETag; `fetch(seq)` gives another stored frame of the same
    run (blob, ETag) or None. Raises ValueError where the chain is broken."""
    chain: list[tuple[bytes, bytes]] = [(blob, etag)]
    seqs = [seq]
    before: Weights | None = None
    for _ in range(KEY_EVERY + 1):  # walk back to a frame kept whole, or one whose weights are known
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
            frame = unpack(stored, before)
        except (ValueError, zlib.error) as exc:
            if depth == 0:
                raise
            raise ValueError(f"it is stored against snapshot {seqs[depth]}, which cannot be read: {exc}") from None
        try:
            before = weights(frame)
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
