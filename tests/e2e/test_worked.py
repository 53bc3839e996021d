"""The inspector's worked numbers in the browser: a clicked feature-map pixel worked forward (its sum is the
pre-activation the frame holds) and backward (the probe's dL/dW is autograd's), and the worked update's ΔW
equal to the snapshot's, for SGD and for Adam."""

from __future__ import annotations

import re
import time
import urllib.request
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from playwright.sync_api import expect

from filterscope.streaming.codec import decode_frame
from filterscope.training.config import TrainConfig
from filterscope.training.data import normalise
from filterscope.training.datasets import get_info
from filterscope.training.replay import state_at
from filterscope.training.worked import model_at
from tests.e2e.conftest import http_json

# 2,000 images at batch 64: 32 steps, the first 10 each a snapshot (ΔW spans one batch there); a few seconds.
CONFIG = {"dataset": "mnist", "model": "tiny", "epochs": 1, "batch_size": 64, "snapshot_every": 10,
          "train_subset": 2000}


def finished(server: str, **overrides: Any) -> dict[str, Any]:
    run = http_json("POST", f"{server}/api/runs", {**CONFIG, **overrides})
    deadline = time.monotonic() + 120
    while (run := http_json("GET", f"{server}/api/runs/{run['id']}"))["status"] != "finished":
        assert time.monotonic() < deadline and run["status"] in ("queued", "running"), run
        time.sleep(0.2)
    return run


def frame(server: str, run_id: str, step: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    seq = next(r["seq"] for r in http_json("GET", f"{server}/api/runs/{run_id}/snapshots") if r["step"] == step)
    with urllib.request.urlopen(f"{server}/api/runs/{run_id}/snapshots/{seq}", timeout=10) as resp:
        return decode_frame(resp.read())


def values(page: Any, testid: str) -> np.ndarray:
    cells = page.get_by_test_id(testid).locator("td")
    return np.array([float(v) for v in cells.evaluate_all("cs => cs.map((c) => c.dataset.value)")])


def number(page: Any, testid: str) -> float:
    return float(page.get_by_test_id(testid).get_attribute("data-value"))


def test_a_clicked_pixel_is_worked_forward_and_backward(page: Any, server: str) -> None:
    run = finished(server)
    page.goto(f"/?run={run['id']}&step=7&filter=conv1.2")
    # The URL's moment is sought once the snapshot list is in; until then the page may show the newest one
    # (and work the convolution out there), so the map to click is step 7's only from then on.
    page.wait_for_function("() => window.filterscope.store.snapshot?.step === 7")
    conv_map = page.get_by_test_id("conv-map")
    expect(conv_map).to_be_visible()
    conv_map.scroll_into_view_if_needed()
    zoom = conv_map.evaluate("c => c.getBoundingClientRect().width / c.width")
    y, x = 11, 9
    conv_map.click(position={"x": (x + 0.5) * zoom, "y": (y + 0.5) * zoom})
    worked = page.get_by_test_id("kernel-convolution")
    expect(worked).to_contain_text(f"Forward: pixel ({y}, {x})")
    expect(worked).to_contain_text("28 − 5 + 1 = 24")
    expect(worked).to_contain_text("⌊(24 − 2) / 2⌋ + 1 = 12")

    # forward: the products summed, plus the bias, are the pre-activation the snapshot's frame holds
    header, arrays = frame(server, run["id"], 7)
    products = values(page, "conv-products")
    assert products.shape == (25,)
    assert np.allclose(products, values(page, "conv-patch") * values(page, "conv-kernel"), rtol=1e-6, atol=1e-12)
    z = number(page, "conv-preact")
    assert products.sum() + number(page, "conv-bias") == pytest.approx(z, abs=1e-6)
    spec = header["layers"][0]["preact"]
    assert abs(z - float(arrays["layers.0.preact"][2, y, x])) <= max(spec["pos"][2], spec["neg"][2]) / 254 + 1e-6
    assert values(page, "conv-kernel") == pytest.approx(arrays["layers.0.weight"][2, 0].ravel(),
                                                         abs=header["layers"][0]["weight"]["scale"] / 32767)

    # backward: the probe's dL/dW is autograd's for that image, on the model rebuilt here
    config = TrainConfig.model_validate(run["config"])
    info = get_info("mnist")
    model = model_at(config, info, state_at(config, info, 7, None, {}))
    probe = normalise(arrays["probe.pixels"], info).unsqueeze(0)
    loss = F.cross_entropy(model(probe), torch.tensor([header["probe"]["label"]]))
    (reference,) = torch.autograd.grad(loss, [model.get_submodule("conv1").weight])
    ref = reference[2, 0].numpy().ravel()
    assert np.abs(ref).max() > 0
    assert np.allclose(values(page, "conv-grad"), ref, rtol=1e-3, atol=1e-5 * np.abs(ref).max())
    assert number(page, "conv-grad-sum") == pytest.approx(number(page, "conv-autograd"), rel=1e-4, abs=1e-9)
    assert number(page, "conv-autograd") == pytest.approx(float(ref[12]), rel=1e-3, abs=1e-6)  # entry (2, 2)
    assert values(page, "conv-batch-grad") == pytest.approx(arrays["layers.0.grad"][2, 0].ravel(),
                                                             abs=header["layers"][0]["grad"]["scale"] / 32767)


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("adam", 5e-3)])
def test_the_worked_update_is_the_snapshots_delta(page: Any, server: str, optimizer: str, lr: float) -> None:
    run = finished(server, optimizer=optimizer, lr=lr)
    header, arrays = frame(server, run["id"], 4)
    q16 = header["layers"][0]["update"]["scale"] / 32767  # the frame's ΔW precision
    page.goto(f"/?run={run['id']}&step=4&filter=conv1.1")
    worked = page.get_by_test_id("kernel-update")
    for cell, (i, j) in ((None, (2, 2)), (7, (1, 2))):
        if cell is not None:
            page.get_by_test_id("kernel-numbers-weight").locator("td").nth(cell).click()
        expect(worked).to_contain_text(f"For entry ({i}, {j}) of input channel 0: W[1, 0, {i}, {j}]")
        expect(worked).to_contain_text("✓ the same step")
        computed, held = number(page, "update-computed"), number(page, "update-held")
        assert held == pytest.approx(float(arrays["layers.0.update"][1, 0, i, j]), rel=1e-6)  # float32 decoding
        assert abs(computed - held) <= q16 and abs(held) > 20 * q16
    if optimizer == "adam":
        expect(worked).to_contain_text("m̂ = m / (1 − β₁^t)")
        expect(worked).to_contain_text("the optimizer's own m now")
    else:
        expect(worked).to_contain_text("ΔW = −lr × (dW + weight decay × W)")


def test_a_live_run_waits_for_a_pause_to_work_its_step(page: Any, ui: Any) -> None:
    page.goto("/")
    ui.start_run(page, epochs="20")
    ui.wait_for_seq_above(page, 1)
    page.get_by_test_id("filter-canvas-0").click(position={"x": 5, "y": 5})
    worked = page.get_by_test_id("kernel-update")
    expect(worked).to_contain_text("Pause the run or pick a moment")  # no replay for every live moment
    # the forward pass is cheap: shown live; while the newest moment is worked out, the one before it stays
    expect(page.get_by_test_id("conv-map")).to_be_visible()
    expect(page.get_by_test_id("conv-step")).to_contain_text(re.compile(r"^At step \d+, the (moment shown|newest)"))
    page.get_by_test_id("pause").click()
    expect(page.get_by_test_id("status")).to_have_text("paused")
    expect(page.get_by_test_id("conv-step")).to_contain_text(re.compile(r"^At step \d+, the moment shown\.$"))
    # the moment paused at, worked: one batch (the same step) or the last of several. The server replays the run
    # from its checkpoint before that step (the pause's own replaced the rolling one: from step 0, ~500 steps,
    # 1-2 s alone and more on a busy CI machine); the page says "Working out…" meanwhile.
    expect(worked).to_contain_text(re.compile(r"✓ the same step|the one worked above is the last of them"),
                                   timeout=30_000)
    expect(worked).to_contain_text("(the optimizer's own m now: ")
