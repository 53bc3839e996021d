"""Time travel against the real server: a run opened at any moment from its URL, the kernel inspector's
numbers, replay, the URL following the timeline, the runs list and the exports."""

from __future__ import annotations

import io
import re
import time
import urllib.request
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from filterscope.streaming.codec import decode_frame
from tests.e2e.conftest import http_json

pytestmark = pytest.mark.e2e

CONFIG = {"dataset": "mnist", "model": "tiny", "epochs": 1, "batch_size": 64, "snapshot_every": 10}


def finished_run(server: str) -> dict[str, Any]:
    run = http_json("POST", f"{server}/api/runs", CONFIG)
    deadline = time.monotonic() + 120
    while (run := http_json("GET", f"{server}/api/runs/{run['id']}"))["status"] != "finished":
        assert time.monotonic() < deadline and run["status"] in ("queued", "running"), run
        time.sleep(0.2)
    return run


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as res:
        return bytes(res.read())


@pytest.fixture(scope="module")
def run(server: str) -> dict[str, Any]:
    return finished_run(server)


def test_a_run_opens_at_any_moment_from_its_url(new_page: Any, ui: Any, run: dict[str, Any]) -> None:
    start, end = new_page(), new_page()
    start.goto(f"/?run={run['id']}&step=0")
    end.goto(f"/?run={run['id']}")
    expect(start.get_by_test_id("timeline-label")).to_contain_text("step 0 ·")
    expect(end.get_by_test_id("timeline-label")).to_contain_text(f"step {run['step']} ·")
    for page in (start, end):
        page.wait_for_function("() => window.filterscope.store.snapshot !== null")
        page.wait_for_timeout(300)
    assert ui.canvas_pixels(start, "filter-canvas-0") != ui.canvas_pixels(end, "filter-canvas-0")
    assert start.evaluate("window.filterscope.store.snapshot.step") == 0


def test_the_kernel_inspector_from_a_url_shows_the_snapshots_numbers(page: Any, server: str,
                                                                   run: dict[str, Any]) -> None:
    refs = http_json("GET", f"{server}/api/runs/{run['id']}/snapshots")
    ref = refs[len(refs) // 2]
    page.goto(f"/?run={run['id']}&step={ref['step']}&filter=conv1.3&mode=grad")
    title = f"conv1 · filter #3 · 1 input channel of 5×5 · at step {ref['step']}"
    expect(page.get_by_test_id("kernel-title")).to_contain_text(title)
    expect(page.get_by_test_id("mode-grad")).to_have_attribute("aria-pressed", "true")
    header, arrays = decode_frame(fetch(f"{server}/api/runs/{run['id']}/snapshots/{ref['seq']}"))
    for kind in ("weight", "grad", "update"):
        cells = page.get_by_test_id(f"kernel-numbers-{kind}").locator("td")
        expect(cells).to_have_count(25)
        shown = np.array([float(v) for v in cells.evaluate_all("cs => cs.map((c) => c.dataset.value)")])
        assert np.allclose(shown, arrays[f"layers.0.{kind}"][3, 0].ravel(), rtol=1e-5, atol=1e-9), kind
        text = cells.first.inner_text()
        assert re.fullmatch(r"-?[\d.]+(e[-+]\d+)?", text) and len(text.replace("-", "").replace(".", "")) <= 8
    expect(page.get_by_test_id("kernel-update")).to_contain_text("Adam")
    expect(page.get_by_test_id("kernel-chart")).to_be_visible()
    # A cell picked, and the filmstrip takes the whole page to another moment.
    page.get_by_test_id("kernel-numbers-weight").locator("td").nth(7).click()
    expect(page.get_by_test_id("kernel-numbers-weight").locator("td.picked")).to_have_count(1)
    strip = page.get_by_test_id("kernel-filmstrip")
    strip.scroll_into_view_if_needed()
    strip.click(position={"x": 3, "y": 8})
    expect(page.get_by_test_id("timeline-label")).to_contain_text("step 0 ·")
    expect(page.get_by_test_id("kernel-title")).to_contain_text("at step 0")


def test_sgd_shows_the_update_worked_with_its_numbers(page: Any, server: str) -> None:
    run = http_json("POST", f"{server}/api/runs", {**CONFIG, "optimizer": "sgd", "lr": 0.05, "epochs": 1})
    deadline = time.monotonic() + 60
    while http_json("GET", f"{server}/api/runs/{run['id']}")["step"] < 5:  # step 3 has been trained
        assert time.monotonic() < deadline
        time.sleep(0.1)
    page.goto(f"/?run={run['id']}&step=3&filter=conv1.0")
    worked = page.get_by_test_id("kernel-update")
    expect(worked).to_contain_text("W_next = W − lr × (dW + weight decay × W)")
    # −lr × (dW + wd × W), worked by the page from the replayed step, beside the ΔW the snapshot holds
    expect(worked).to_contain_text("✓ the same step")
    predicted = float(page.get_by_test_id("update-computed").get_attribute("data-value"))
    held = float(page.get_by_test_id("update-held").get_attribute("data-value"))
    assert predicted == pytest.approx(held, rel=1e-3, abs=1e-9)


def test_play_advances_and_the_url_follows_the_timeline(page: Any, run: dict[str, Any]) -> None:
    page.goto(f"/?run={run['id']}")
    expect(page.get_by_test_id("timeline-label")).to_contain_text("the last moment")
    page.wait_for_function("() => window.filterscope.store.index.length > 10")
    page.locator("body").press("Home")
    expect(page.get_by_test_id("timeline-label")).to_contain_text("step 0 ·")
    page.wait_for_url(re.compile(r"[?&]step=0(&|$)"))
    page.get_by_test_id("timeline-speed").select_option("fps30")
    page.get_by_test_id("timeline-play").click()
    page.wait_for_function("() => window.filterscope.store.snapshot.step > 20")
    page.get_by_test_id("timeline-play").click()  # pause the replay
    # A frame the replay asked for before the pause may still arrive and be shown: wait until the moment
    # shown is the one the timeline points at, then read it.
    page.wait_for_function("() => { const s = window.filterscope.store; "
                           "return !s.playing && s.snapshot && s.snapshot.seq === s.cursor; }")
    step = page.evaluate("window.filterscope.store.snapshot.step")
    page.wait_for_url(re.compile(rf"[?&]step={step}(&|$)"))
    page.locator("body").press("ArrowRight")
    expect(page.get_by_test_id("timeline-label")).not_to_contain_text(f"step {step} ·")
    page.locator("body").press("End")
    expect(page.get_by_test_id("timeline-label")).to_contain_text("the last moment")
    page.wait_for_function("() => !new URL(location.href).searchParams.has('step')")


def test_the_runs_list_opens_and_deletes_runs(page: Any, ui: Any, console: Any) -> None:
    console.allow("status of 404")  # the clean-up asks after every run this browser started, the deleted one too
    page.goto("/")
    first = ui.start_run(page, epochs="1", train_subset="500")
    expect(page.get_by_test_id("status")).to_have_text("finished", timeout=60_000)
    page.get_by_test_id("new-run").click()
    second = ui.start_run(page, epochs="1")
    expect(page.get_by_test_id(f"run-row-{first}")).to_be_visible()
    page.get_by_test_id(f"run-open-{first}").click()
    page.wait_for_url(re.compile(rf"[?&]run={first}"))
    page.once("dialog", lambda d: d.accept())
    page.get_by_test_id(f"run-delete-{second}").click()
    expect(page.get_by_test_id(f"run-row-{second}")).to_have_count(0)
    assert ui.http_run_status(second) == 404


def test_the_exports_open(server: str, run: dict[str, Any]) -> None:
    gif = Image.open(io.BytesIO(fetch(f"{server}/api/runs/{run['id']}/export/filters.gif?layer=conv1")))
    assert gif.n_frames == run["snapshots"] and gif.size[0] >= 320
    npz = np.load(io.BytesIO(fetch(f"{server}/api/runs/{run['id']}/export/weights.npz")))
    assert npz["conv1.weight"].shape == (run["snapshots"], 8, 1, 5, 5)
    assert npz["conv2.weight"].shape == (run["snapshots"], 32, 8, 5, 5) and npz["step"][0] == 0
