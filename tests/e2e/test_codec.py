"""The page's own decoder (static/js/codec.js) on real frames made by app/streaming/codec.py: the same shapes and
numbers as Python's decode_frame, and the snapshot's own values within the quantisation step."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import numpy as np
import pytest

from filterscope.streaming.codec import decode_frame, encode_snapshot, encode_u8_json
from tests.streaming.test_codec import diverged, snapshot_of

pytestmark = pytest.mark.e2e

# Every array of a decoded frame by the dotted path Python uses ("layers.0.weight"), with its shape and values.
DECODE = """async ([b64]) => {
    const { decodeFrame } = await import('/static/js/codec.js');
    const text = atob(b64);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    const frame = decodeFrame(bytes.buffer);
    const arrays = {};
    const walk = (node, path) => {
        if (node && typeof node.values === 'function' && Array.isArray(node.shape)) {
            arrays[path] = {shape: node.shape, dtype: node.dtype, values: Array.from(node.values()),
                            maxAbs: node.maxAbs(), min: node.min()};
        } else if (Array.isArray(node)) {
            node.forEach((v, i) => walk(v, `${path}.${i}`));
        } else if (node && typeof node === 'object') {
            for (const [k, v] of Object.entries(node)) walk(v, path ? `${path}.${k}` : k);
        }
    };
    walk(frame, '');
    return {arrays, seq: frame.seq, step: frame.step, probs: frame.probe.probs, label: frame.probe.label,
            names: frame.layers.map((l) => l.name), fmapTypes: frame.layers.map((l) => l.fmap.dtype)};
}"""

BASE64 = """async ([answer]) => {
    const { decodeBase64Arrays } = await import('/static/js/codec.js');
    const a = decodeBase64Arrays(answer).maps;
    return {shape: a.shape, values: Array.from(a.values())};
}"""


def open_origin(page: Any) -> None:
    """A bare page of the server (its JSON health answer), so that the module is imported from its origin."""
    page.route("**/favicon.ico", lambda route: route.fulfill(status=204))  # the browser asks; the server has none
    page.goto("/healthz")


def in_page(page: Any, frame: bytes) -> dict[str, Any]:
    open_origin(page)
    return dict(page.evaluate(DECODE, [base64.b64encode(frame).decode()]))


def snapshots() -> dict[str, Any]:
    tiny = snapshot_of("tiny")
    # a layer without ReLU: its map travels as u8 with its own range, not derived from the pre-activation
    plain = dataclasses.replace(tiny.layers[1], relu=False)
    mixed = tiny.__class__(**{**tiny.__dict__, "layers": (tiny.layers[0], plain)})
    return {"tiny": tiny, "lenet5 (RGB)": snapshot_of("lenet5", 3, 32), "u8 map": mixed}


@pytest.mark.parametrize("name", list(snapshots()))
def test_the_page_decodes_a_real_frame_as_python_does(page: Any, name: str) -> None:
    snap = snapshots()[name]
    frame = encode_snapshot(snap)
    header, arrays = decode_frame(frame)
    js = in_page(page, frame)
    assert (js["seq"], js["step"], js["label"]) == (header["seq"], header["step"], header["probe"]["label"])
    assert js["probs"] == header["probe"]["probs"] and js["names"] == [x.name for x in snap.layers]
    assert js["fmapTypes"] == ["relu" if x.relu else "u8" for x in snap.layers]
    assert set(js["arrays"]) == set(arrays)  # the same arrays, the derived maps included
    for path, expected in arrays.items():
        got = js["arrays"][path]
        assert tuple(got["shape"]) == expected.shape, path
        values = np.array(got["values"], np.float64).reshape(expected.shape)
        # one float32 rounding apart at most (Python and JavaScript multiply in their own order)
        np.testing.assert_allclose(values, expected, rtol=2e-7, atol=1e-12, err_msg=path)
        if got["dtype"] != "relu":
            assert got["maxAbs"] == pytest.approx(float(np.abs(expected).max()) if path != "probe.pixels" else 255)
    for i, layer in enumerate(snap.layers):  # and the snapshot itself, within each encoding's step
        for key in ("weight", "grad", "update"):
            original = getattr(layer, key)
            got = np.array(js["arrays"][f"layers.{i}.{key}"]["values"]).reshape(original.shape)
            np.testing.assert_allclose(got, original, atol=float(np.abs(original).max()) / 32767)
        fmap = np.array(js["arrays"][f"layers.{i}.fmap"]["values"]).reshape(layer.fmap.shape)
        span = (layer.fmap.max(axis=(1, 2)) - (0 if layer.relu else layer.fmap.min(axis=(1, 2))))[:, None, None]
        assert np.all(np.abs(fmap - layer.fmap) <= span / 254 * 1.01 + 1e-7)
        if layer.relu:
            assert not fmap[layer.fmap == 0].any()  # zero where the network's ReLU gave zero
    pixels = np.array(js["arrays"]["probe.pixels"]["values"]).reshape(snap.probe.pixels.shape)
    np.testing.assert_array_equal(pixels, snap.probe.pixels)


def test_a_diverged_frame_decodes_to_zeros_not_nan(page: Any) -> None:
    snap = diverged(snapshot_of("tiny"))
    js = in_page(page, encode_snapshot(snap))
    assert js["probs"] == [None] * 10
    for key in ("weight", "preact", "fmap"):
        assert not any(js["arrays"][f"layers.0.{key}"]["values"]), key


def test_the_inspect_answers_base64_maps_decode_as_python_does(page: Any) -> None:
    maps = np.random.default_rng(4).normal(size=(6, 12, 12)).astype(np.float32)
    meta = encode_u8_json(maps)
    open_origin(page)
    got = page.evaluate(BASE64, [{"maps": meta}])
    q = np.frombuffer(base64.b64decode(meta["data"]), np.uint8).reshape(6, 12, 12)
    lo, hi = np.array(meta["lo"])[:, None, None], np.array(meta["hi"])[:, None, None]
    assert got["shape"] == [6, 12, 12]
    values = np.array(got["values"]).reshape(6, 12, 12)
    np.testing.assert_allclose(values, lo + q / 255 * (hi - lo), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(values, maps, atol=float((hi - lo).max()) / 255)
