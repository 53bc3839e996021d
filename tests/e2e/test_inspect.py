"""The upload panel against the real server: drop, pick, draw and paste-free paths to the inspect endpoint; and
the kernel inspector's numbers, rewritten in place as the timeline moves, its update worked with the boot data's
optimizer settings."""

from __future__ import annotations

import base64
import time
import urllib.request
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import http_json

pytestmark = pytest.mark.e2e

DROP = """async ([b64, name, type]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], name, { type }));
    return dt;
}"""


def sample_png(server: str, index: int) -> bytes:
    """A test-set image of the `shapes` data set as the server serves it."""
    with urllib.request.urlopen(f"{server}/api/datasets/shapes/test/{index}.png", timeout=10) as resp:
        return bytes(resp.read())


def drop_file(page: Any, data: bytes, name: str, mime: str) -> None:
    dt = page.evaluate_handle(DROP, [base64.b64encode(data).decode(), name, mime])
    page.get_by_test_id("dropzone").dispatch_event("drop", {"dataTransfer": dt})


def test_dropped_image_shows_feature_maps_and_probabilities(page: Any, ui: Any, server: str) -> None:
    page.goto("/")
    ui.start_run(page, epochs="20")
    # Two snapshots at least, one of them an epoch end, so the slider has somewhere to go.
    page.wait_for_function("() => window.filterscope.store.history.length >= 1", timeout=30_000)

    drop_file(page, sample_png(server, 1), "shape.png", "image/png")
    result = page.get_by_test_id("inspect-result")
    expect(result).to_be_visible()
    expect(page.get_by_test_id("inspect-prediction")).to_contain_text("prediction:")
    classes = page.evaluate("window.filterscope.store.run.classes.length")
    expect(result.get_by_test_id("probbars").locator("li")).to_have_count(classes)
    page.wait_for_function("() => document.querySelector('[data-testid=inspect-input]').naturalWidth > 0")
    assert ui.lit_fraction(page, "inspect-fmap-canvas-0") > 0.3
    assert ui.lit_fraction(page, "inspect-fmap-canvas-1") > 0.3

    # The timeline goes back to step 0: the image is run again through the untrained network, and says so.
    page.get_by_test_id("timeline-first").click()
    expect(page.get_by_test_id("inspect-prediction")).to_contain_text("the model at step 0")
    expect(page.get_by_test_id("snapshot-text")).to_contain_text("step 0")
    page.get_by_test_id("timeline-live").click()

    # The uploaded image becomes the live probe.
    page.get_by_test_id("use-probe").click()
    expect(page.get_by_test_id("probe-caption")).to_contain_text("uploaded image", timeout=20_000)


def test_file_picker_drawing_and_paste(page: Any, ui: Any, server: str) -> None:
    page.goto("/")
    ui.start_run(page, epochs="20")
    ui.wait_for_seq_above(page, 0)

    page.get_by_test_id("file-input").set_input_files(
        files=[{"name": "shape.png", "mimeType": "image/png", "buffer": sample_png(server, 2)}])
    expect(page.get_by_test_id("inspect-result")).to_be_visible()
    first = page.get_by_test_id("inspect-input").get_attribute("src")

    pad = page.get_by_test_id("drawpad")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 30, box["y"] + 30)
    page.mouse.down()
    page.mouse.move(box["x"] + 130, box["y"] + 40, steps=6)
    page.mouse.move(box["x"] + 60, box["y"] + 140, steps=6)
    page.mouse.up()
    page.wait_for_function(
        "old => document.querySelector('[data-testid=inspect-input]').getAttribute('src') !== old", arg=first)
    expect(page.get_by_test_id("inspect-error")).to_be_hidden()

    # Paste (Ctrl+V) of an image from the clipboard.
    before_paste = page.get_by_test_id("inspect-input").get_attribute("src")
    dt = page.evaluate_handle(DROP, [base64.b64encode(sample_png(server, 5)).decode(), "clip.png", "image/png"])
    page.evaluate("dt => document.body.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true}))",
                  dt)
    page.wait_for_function(
        "old => document.querySelector('[data-testid=inspect-input]').getAttribute('src') !== old", arg=before_paste)


def test_bad_file_shows_the_server_sentence(page: Any, ui: Any, console: Any) -> None:
    console.allow(r"status of 415")  # the browser logs the expected refusal
    page.goto("/")
    ui.start_run(page, epochs="20")
    ui.wait_for_seq_above(page, 0)
    drop_file(page, b"this is not an image", "notes.txt", "text/plain")
    error = page.get_by_test_id("inspect-error")
    expect(error).to_be_visible()
    expect(error).not_to_have_text("")
    assert "415" not in error.inner_text()  # a sentence, not a status code


MOMENTUM_RUN = {"dataset": "shapes", "model": "tiny", "epochs": 1, "snapshot_every": 5, "optimizer": "momentum"}
# The boot data's momentum changed before the page's script reads it (parsing is over, deferred scripts not yet
# run): the worked update must follow the boot data, not a number of its own.
BOOT_MOMENTUM = """document.addEventListener('readystatechange', () => {
    if (document.readyState !== 'interactive') return;
    const element = document.getElementById('boot');
    const boot = JSON.parse(element.textContent);
    boot.optimizers.momentum.momentum = 0.5;
    element.textContent = JSON.stringify(boot);
});"""


def listeners(page: Any, selector: str) -> list[str]:
    """The event types listened to on the element itself (Chrome DevTools), not on its ancestors."""
    cdp = page.context.new_cdp_session(page)
    found = cdp.send("Runtime.evaluate", {"expression": f"document.querySelector({selector!r})"})
    answer = cdp.send("DOMDebugger.getEventListeners", {"objectId": found["result"]["objectId"]})
    return [entry["type"] for entry in answer["listeners"]]


def test_the_kernel_numbers_are_rewritten_in_place_and_the_update_follows_the_boot_data(page: Any,
                                                                                          server: str) -> None:
    run = http_json("POST", f"{server}/api/runs", MOMENTUM_RUN)
    deadline = time.monotonic() + 120
    while (run := http_json("GET", f"{server}/api/runs/{run['id']}"))["status"] != "finished":
        assert time.monotonic() < deadline and run["status"] in ("queued", "running"), run
        time.sleep(0.2)
    refs = http_json("GET", f"{server}/api/runs/{run['id']}/snapshots")
    ref, after = refs[len(refs) // 2], refs[len(refs) // 2 + 1]

    page.add_init_script(BOOT_MOMENTUM)
    page.goto(f"/?run={run['id']}&step={ref['step']}&filter=conv1.3")
    worked = page.get_by_test_id("kernel-update")
    expect(worked).to_contain_text("SGD with momentum 0.5")
    expect(worked).to_contain_text("v = 0.5 × v + dW")
    cells = page.get_by_test_id("kernel-numbers-weight").locator("td")
    expect(cells).to_have_count(25)

    # One listener on the box answers every cell; none on the cells themselves.
    first = "[data-testid=kernel-numbers-weight] td"
    assert listeners(page, first) == []
    assert listeners(page, "[data-testid=kernel-numbers]").count("click") == 1

    # The next moment: the same cell, its number rewritten, not a new table.
    value = page.evaluate(f"() => {{ window.kernelCell = document.querySelector('{first}'); "
                          "return window.kernelCell.dataset.value; }")
    page.locator("body").press("ArrowRight")
    expect(page.get_by_test_id("kernel-title")).to_contain_text(f"at step {after['step']}")
    assert page.evaluate(f"() => document.querySelector('{first}') === window.kernelCell")
    assert page.evaluate("() => window.kernelCell.dataset.value") != value

    # Picking still works through the one listener, and the update names the entry picked.
    cells.nth(7).click()
    expect(page.get_by_test_id("kernel-numbers-weight").locator("td.picked")).to_have_count(1)
    expect(worked).to_contain_text("For entry (1, 2)")
