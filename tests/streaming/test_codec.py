"""Snapshot frames decode back to the snapshot, small and aligned; text frames carry no NaN."""

from __future__ import annotations

import dataclasses
import json
import struct

import numpy as np
import pytest
import torch

from filterscope.streaming.codec import decode_frame, encode_event, encode_snapshot, encode_u8_json
from filterscope.training.engine import EpochSummary, Status, StatusEvent, StepsEvent, WarningEvent
from filterscope.training.models import build_model, conv_layers
from filterscope.training.snapshots import Probe, ProbeMaps, Reference, Snapshot, capture, conv_weights


def snapshot_of(model_name: str, channels: int = 1, size: int = 28):
    torch.manual_seed(0)
    model = build_model(model_name, channels, size, 10)
    layers = conv_layers(model)
    previous = conv_weights(layers)
    reference = Reference()
    reference.start = {name: w.copy() for name, w in previous.items()}
    x = torch.randn(8, channels, size, size)
    torch.nn.functional.cross_entropy(model(x), torch.arange(8)).backward()
    with torch.no_grad():
        for layer in layers:
            layer.conv.weight.add_(0.01 * torch.randn_like(layer.conv.weight))
    pixels = np.random.default_rng(0).integers(0, 256, (channels, size, size), dtype=np.uint8)
    probe = Probe(pixels, torch.from_numpy(pixels).float().unsqueeze(0) / 255, 3, 7, "test")
    return capture(model, layers, previous, probe, reference, seq=4, step=40, epoch=0, samples_seen=1280, loss=0.7,
                   lr=0.002, elapsed=1.5, instrument_seconds=0.04, epoch_end=False)


@pytest.mark.parametrize(("model_name", "channels", "size"), [("tiny", 1, 28), ("classic", 1, 28),
                                                              ("lenet5", 3, 32)])
def test_a_snapshot_round_trips(model_name: str, channels: int, size: int) -> None:
    snap = snapshot_of(model_name, channels, size)
    header, arrays = decode_frame(encode_snapshot(snap))
    assert header["type"] == "snapshot" and header["v"] == 2
    assert (header["seq"], header["step"], header["samples_seen"]) == (4, 40, 1280)
    assert (header["elapsed"], header["instrument_seconds"]) == (1.5, 0.04)
    assert header["probe"]["label"] == 7 and len(header["probe"]["probs"]) == 10
    np.testing.assert_array_equal(arrays["probe.pixels"], snap.probe.pixels)
    for i, layer in enumerate(snap.layers):
        assert header["layers"][i]["name"] == layer.name
        # the page's "whole run" colour scale and the per-layer line under each header
        assert header["layers"][i]["peaks"] == {k: float(np.abs(getattr(layer, k)).max()) for k in
                                                ("weight", "grad", "update")}
        measures = header["layers"][i]["measures"]
        assert 0.9 < measures["cosine_to_start"] <= 1 and 0 < measures["moved"] < 0.5
        for key in ("weight", "grad", "update"):
            original = getattr(layer, key)
            decoded = arrays[f"layers.{i}.{key}"]
            assert decoded.shape == original.shape
            # int16 against the largest entry: error at most half a step of 1/32767 of it
            tol = np.abs(original).max() / 32767
            np.testing.assert_allclose(decoded, original, atol=tol)
            assert np.array_equal(np.sign(decoded[np.abs(original) > tol]), np.sign(original[np.abs(original) > tol]))
        # After ReLU the map is derived from the pre-activation: each side to half a step of 1/127 of its extreme
        fmap = arrays[f"layers.{i}.fmap"]
        top = layer.fmap.max(axis=(1, 2))[:, None, None]
        assert header["layers"][i]["fmap"] == {"shape": list(layer.fmap.shape), "dtype": "relu", "of": "preact"}
        assert np.all(np.abs(fmap - layer.fmap) <= top / 254 * 1.001 + 1e-7)
        np.testing.assert_array_equal(fmap, np.maximum(arrays[f"layers.{i}.preact"], 0))
        # zero exactly where the network's ReLU gave zero, lit wherever its value is more than a quantisation step
        assert not fmap[layer.fmap == 0].any()
        assert np.all(fmap[layer.fmap > top / 127] > 0)
        assert (layer.fmap == 0).any() and (layer.fmap > top / 127).any()  # both kinds of entry are there to check


def test_pre_activation_maps_are_signed_and_match_the_conv_output() -> None:
    snap = snapshot_of("tiny")
    header, arrays = decode_frame(encode_snapshot(snap))
    model = build_model("tiny", 1, 28, 10)
    model.load_state_dict(snap.state)
    model.eval()
    x = snap.probe.tensor
    with torch.no_grad():
        conv1 = model.conv1(x)[0].numpy()  # (8, 24, 24): the conv's own output, before its ReLU
        conv2 = model.conv2(model.pool1(model.relu1(model.conv1(x))))[0].numpy()
    for i, expected in enumerate((conv1, conv2)):
        preact = arrays[f"layers.{i}.preact"]
        assert header["layers"][i]["preact"]["dtype"] == "q8s"
        assert preact.shape == expected.shape and (preact < 0).any() and (preact > 0).any()
        top = np.abs(expected).reshape(expected.shape[0], -1).max(axis=1)[:, None, None]
        np.testing.assert_allclose(preact, expected, atol=float(top.max()) / 254 * 1.01)
        clear = np.abs(expected) > top / 100
        assert np.array_equal(np.sign(preact[clear]), np.sign(expected[clear]))
        np.testing.assert_allclose(arrays[f"layers.{i}.fmap"], np.maximum(preact, 0))
        assert header["layers"][i]["pool"] == {"kind": "max", "size": 2, "stride": 2}


def test_arrays_are_aligned_for_typed_array_views() -> None:
    frame = encode_snapshot(snapshot_of("classic"))
    (length,) = struct.unpack_from("<I", frame, 0)
    assert length % 4 == 0
    header = json.loads(frame[4:4 + length])
    metas = [header["probe"]["pixels"]] + [layer[k] for layer in header["layers"]
                                           for k in ("weight", "grad", "update", "preact")]
    assert all(m["offset"] % 4 == 0 for m in metas)
    end = max(m["offset"] + int(np.prod(m["shape"])) * (2 if m["dtype"] == "q16" else 1) for m in metas)
    assert 4 + length + end <= len(frame) < 4 + length + end + 4


def test_a_tiny_snapshot_is_under_50_kb() -> None:
    # 6,600 kernel entries x 3 tensors as int16 (40 KB) and 6,600 pre-activation bytes (the maps after ReLU are
    # derived from them, not sent): ~12 a second is ~0.6 MB/s
    assert len(encode_snapshot(snapshot_of("tiny"))) < 50_000


def test_all_zero_tensors_encode_as_zeros() -> None:
    snap = snapshot_of("tiny")
    maps, preacts, probs = snap.maps.get()
    name = snap.layers[0].name
    zero = ProbeMaps.given({**maps, name: np.zeros_like(maps[name])}, {**preacts, name: np.zeros_like(maps[name])},
                           probs)
    zeroed = dataclasses.replace(snap.layers[0], weight=np.zeros_like(snap.layers[0].weight), maps=zero)
    snap = snap.__class__(**{**snap.__dict__, "layers": (zeroed, *snap.layers[1:])})
    header, arrays = decode_frame(encode_snapshot(snap))
    assert header["layers"][0]["weight"]["scale"] == 0
    assert not arrays["layers.0.weight"].any() and not arrays["layers.0.fmap"].any()
    assert not arrays["layers.0.preact"].any()


def test_text_events_are_json_without_nan() -> None:
    steps = json.loads(encode_event(StepsEvent([1, 2], [0.5, float("nan")], {"conv1": [0.00123456, float("nan")]})))
    assert steps == {"type": "steps", "steps": [1, 2], "losses": [0.5, None], "ratios": {"conv1": [0.001235, None]}}
    epoch = json.loads(encode_event(EpochSummary(1, 250, 0.4, 0.2, 0.95, 0.002, 3.2, train_accuracy=0.99)))
    assert epoch["type"] == "epoch" and epoch["test_accuracy"] == 0.95 and epoch["train_accuracy"] == 0.99
    status = json.loads(encode_event(StatusEvent(Status.PAUSED, None, 1, 260, 0.002, samples_seen=8320)))
    # lr_changes is the run record's to fill in (every rate set by hand so far); the codec leaves it null
    assert status == {"type": "status", "status": "paused", "message": None, "epoch": 1, "step": 260, "lr": 0.002,
                      "samples_seen": 8320, "lr_changes": None}
    warning = json.loads(encode_event(WarningEvent("stalled", 200, "The loss has stayed at chance.")))
    assert warning == {"type": "warning", "kind": "stalled", "step": 200, "message": "The loss has stayed at chance."}


def test_u8_json_matches_the_frame_encoding() -> None:
    a = np.random.default_rng(1).random((4, 6, 6)).astype(np.float32)
    meta = encode_u8_json(a)
    import base64

    q = np.frombuffer(base64.b64decode(meta["data"]), np.uint8).reshape(4, 6, 6)
    lo, hi = np.array(meta["lo"])[:, None, None], np.array(meta["hi"])[:, None, None]
    np.testing.assert_allclose(lo + q / 255 * (hi - lo), a, atol=1 / 255)


def diverged(snap: Snapshot) -> Snapshot:
    """`snap` as a run that blew up leaves it: the first layer's W and pre-activation maps, the probabilities
    NaN, the loss infinite."""
    maps, preacts, _ = snap.maps.get()
    name = snap.layers[0].name
    broken = ProbeMaps.given(maps, {**preacts, name: np.full_like(preacts[name], np.nan)},
                             np.full(10, np.nan, np.float32))
    nan = dataclasses.replace(snap.layers[0], weight=np.full_like(snap.layers[0].weight, np.nan), maps=broken)
    return dataclasses.replace(snap, layers=(nan, *snap.layers[1:]), maps=broken, loss=float("inf"))


def test_a_diverged_snapshot_still_decodes_in_a_browser_no_nan_in_its_header() -> None:
    snap = diverged(snapshot_of("tiny"))
    frame = encode_snapshot(snap)
    (length,) = struct.unpack_from("<I", frame, 0)
    text = frame[4:4 + length].decode()
    assert "NaN" not in text and "Infinity" not in text
    header, arrays = decode_frame(frame)
    assert header["probe"]["probs"] == [None] * 10 and header["loss"] is None
    assert not arrays["layers.0.weight"].any() and not arrays["layers.0.preact"].any()
