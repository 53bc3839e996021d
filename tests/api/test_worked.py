"""The worked convolution and update through the real app, checked against the frames the run stored."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from filterscope.streaming.codec import decode_frame
from tests.api.conftest import OwnerClient, start_run, wait_status

Finished = tuple[OwnerClient, dict[str, Any]]


def frame(client: OwnerClient, run_id: str, seq: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    res = client.get(f"/api/runs/{run_id}/snapshots/{seq}")
    assert res.status_code == 200
    return decode_frame(res.content)


def refs(client: OwnerClient, run_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/runs/{run_id}/snapshots").json())


def test_one_pixel_worked_forward_is_the_pre_activation_the_frame_holds(finished_run: Finished) -> None:
    client, run = finished_run
    seq = refs(client, run["id"])[6]["seq"]  # step 6: the dense start
    header, arrays = frame(client, run["id"], seq)
    for li, layer, f, size, pooled in ((0, "conv1", 3, 24, 12), (1, "conv2", 31, 8, 4)):
        spec = header["layers"][li]["preact"]
        step = max(spec["pos"][f], spec["neg"][f]) / 127  # the frame's q8s precision for this map
        for y, x in ((0, 0), (size - 1, size // 2), (size // 3, size - 1)):
            res = client.get(f"/api/runs/{run['id']}/snapshots/{seq}/convolution/{layer}/{f}?y={y}&x={x}")
            assert res.status_code == 200, res.text
            body = res.json()
            px = body["pixel"]
            assert (px["y"], px["x"]) == (y, x)
            products = np.array(px["products"])
            assert np.allclose(products, np.array(px["patch"]) * np.array(body["kernel"]), rtol=1e-6, atol=1e-12)
            assert px["sum"] == pytest.approx(products.sum(), abs=1e-6)
            assert px["preact"] == pytest.approx(px["sum"] + px["bias"], abs=1e-7)
            assert px["preact"] == pytest.approx(px["module_preact"], abs=1e-5)
            assert abs(px["preact"] - float(arrays[f"layers.{li}.preact"][f, y, x])) <= step / 2 + 1e-6
            assert px["output"] == max(px["module_preact"], 0.0)
            assert body["preact"][y][x] == pytest.approx(px["module_preact"])
            # max pooling 2×2: the window holding the pixel, and the one of its four that survives
            y0, x0, y1, x1 = px["window"]
            assert (y0, x0, y1 - y0, x1 - x0) == (y // 2 * 2, x // 2 * 2, 2, 2)
            window = np.array(body["output"])[y0:y1, x0:x1]
            assert px["pooled"] == pytest.approx(window.max())
            assert body["output"][px["survivor"][0]][px["survivor"][1]] == pytest.approx(px["pooled"])
        g = body["geometry"]
        assert g["output_size"] == [size, size] and g["pooled_size"] == [pooled, pooled]
        assert g["input_size"][0] + g["padding"][0] + g["padding"][1] - g["kernel"][0] + 1 == size
        assert g["pool"] == {"kind": "max", "size": [2, 2], "stride": [2, 2], "padding": [0, 0]}
        assert body["filter"] == f and body["channels"] == list(range(1 if li == 0 else 8))
        assert np.array(body["input"]).shape == (len(body["channels"]), *g["input_size"])


def test_the_probe_kernel_gradient_written_out_is_autograds(finished_run: Finished) -> None:
    client, run = finished_run
    seq = refs(client, run["id"])[-1]["seq"]
    header, arrays = frame(client, run["id"], seq)
    body = client.get(f"/api/runs/{run['id']}/snapshots/{seq}/convolution/conv1/5").json()
    grad, autograd = np.array(body["grad"]), np.array(body["autograd"])
    assert grad.shape == (1, 5, 5) and np.abs(autograd).max() > 0
    assert np.allclose(grad, autograd, rtol=1e-4, atol=1e-6 * np.abs(autograd).max())
    # the same sum, from the answer's own numbers: Σ_yx input[c, y + i, x + j] · δ[y, x]
    image, delta = np.array(body["input"], np.float64), np.array(body["delta"], np.float64)
    written = np.array([[[(image[c, i:i + 24, j:j + 24] * delta).sum() for j in range(5)] for i in range(5)]
                        for c in range(1)])
    assert np.allclose(written, autograd, rtol=1e-4, atol=1e-6 * np.abs(autograd).max())
    assert body["grad_bias"] == pytest.approx(delta.sum(), rel=1e-4, abs=1e-9)
    assert np.allclose(np.array(body["delta"]), np.array(body["delta_output"]) * (np.array(body["preact"]) > 0))
    assert body["target"] == {"index": header["probe"]["label"], "name": body["target"]["name"], "is_label": True,
                              "probability": pytest.approx(header["probe"]["probs"][header["probe"]["label"]],
                                                           abs=1e-5)}
    assert body["loss"] == pytest.approx(-np.log(body["target"]["probability"]), rel=1e-4)
    # no pixel asked for: the map's largest
    out = np.array(body["output"])
    assert body["pixel"]["output"] == pytest.approx(out.max())
    assert np.array(body["kernel"]) == pytest.approx(arrays["layers.0.weight"][5], abs=header["layers"][0]["weight"]
                                                     ["scale"] / 32767)


def test_the_update_worked_is_the_snapshots_delta_for_a_one_batch_snapshot(finished_run: Finished) -> None:
    client, run = finished_run
    listed = refs(client, run["id"])
    assert [r["step"] for r in listed[:11]] == list(range(11))
    for ref in (listed[1], listed[4], listed[10]):  # ΔW spans one batch
        header, arrays = frame(client, run["id"], ref["seq"])
        for li, layer, f in ((0, "conv1", 0), (1, "conv2", 17)):
            res = client.get(f"/api/runs/{run['id']}/snapshots/{ref['seq']}/update/{layer}/{f}")
            assert res.status_code == 200, res.text
            body = res.json()
            assert body["batches"] == 1 and body["optimizer"] == "adam" and body["t"] == ref["step"]
            assert body["settings"] == {"betas": [0.9, 0.999], "eps": 1e-8}
            assert set(body["state_after"]) == {"m", "v"}
            assert set(body["state_before"]) == (set() if ref["step"] == 1 else {"m", "v"})
            held = arrays[f"layers.{li}.update"][f]
            q16 = header["layers"][li]["update"]["scale"] / 32767  # the frame's ΔW precision
            assert np.abs(np.array(body["delta"]) - held).max() <= q16
            assert np.abs(np.array(body["predicted"]) - held).max() <= q16 + 1e-8
            assert np.abs(np.array(body["after"]) - arrays[f"layers.{li}.weight"][f]).max() <= \
                header["layers"][li]["weight"]["scale"] / 32767
            # the rule written out for one entry, as the page does it
            b1, b2 = body["settings"]["betas"]
            t, lr, wd = body["t"], body["lr"], body["weight_decay"]
            w0, g = body["before"][0][2][2], body["grad"][0][2][2]
            g += wd * w0
            m0 = body["state_before"]["m"][0][2][2] if body["state_before"] else 0.0
            v0 = body["state_before"]["v"][0][2][2] if body["state_before"] else 0.0
            m, v = b1 * m0 + (1 - b1) * g, b2 * v0 + (1 - b2) * g * g
            assert m == pytest.approx(body["state_after"]["m"][0][2][2], rel=1e-5)
            step = -lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + body["settings"]["eps"])
            assert step == pytest.approx(float(held[0, 2, 2]), abs=q16)


def test_sgd_with_momentum_works_its_velocity(client: OwnerClient) -> None:
    run = start_run(client, optimizer="momentum", lr=0.05, train_subset=256, batch_size=32, epochs=1)
    wait_status(client, run["id"], "finished")
    ref = refs(client, run["id"])[3]
    header, arrays = frame(client, run["id"], ref["seq"])
    body = client.get(f"/api/runs/{run['id']}/snapshots/{ref['seq']}/update/conv1/2").json()
    assert body["settings"] == {"momentum": 0.9} and body["t"] is None
    velocity = 0.9 * np.array(body["state_before"]["velocity"]) + np.array(body["grad"]) \
        + body["weight_decay"] * np.array(body["before"])
    assert np.allclose(velocity, body["state_after"]["velocity"], rtol=1e-5, atol=1e-9)
    held = arrays["layers.0.update"][2]
    assert np.abs(-body["lr"] * velocity - held).max() <= header["layers"][0]["update"]["scale"] / 32767


@pytest.mark.parametrize("path,code,words", [
    ("snapshots/999/convolution/conv1/0", 404, "has no snapshot 999"),
    ("snapshots/3/convolution/conv9/0", 404, "no conv layer 'conv9'"),
    ("snapshots/3/convolution/conv1/8", 404, "has 8 filters, counted from 0: ask for 0 to 7"),
    ("snapshots/3/convolution/conv1/0?y=24&x=0", 422, "outside conv1's 24×24 map"),
    ("snapshots/3/convolution/conv1/0?y=2", 422, "Give both y and x"),
    ("snapshots/3/convolution/conv1/0?y=-1&x=0", 422, "greater than or equal to 0"),
    ("snapshots/3/update/conv2/32", 404, "has 32 filters"),
    ("snapshots/0/update/conv1/0", 409, "no step has been made yet"),
    ("snapshots/999/update/conv1/0", 404, "has no snapshot 999"),
])
def test_bad_input_is_answered_with_one_sentence(finished_run: Finished, path: str, code: int, words: str) -> None:
    client, run = finished_run
    res = client.get(f"/api/runs/{run['id']}/{path}")
    assert res.status_code == code, res.text
    assert words in str(res.json()["detail"])
    assert client.get(f"/api/runs/nope/{path}").status_code == 404
