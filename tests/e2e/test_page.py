"""The page against the real server: start a run, watch it learn, pause, share, reject bad values."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_page_renders_controls_with_defaults(page: Any) -> None:
    page.goto("/")
    expect(page.get_by_test_id("status")).to_have_text("no run")
    defaults = page.evaluate("JSON.parse(document.getElementById('boot').textContent).defaults")
    assert float(page.get_by_test_id("field-lr").input_value()) == defaults["lr"]
    assert page.get_by_test_id("field-model").input_value() == defaults["model"]
    expect(page.get_by_test_id("start")).to_be_enabled()
    for name in ("pause", "step", "stop", "new-run"):
        expect(page.get_by_test_id(name)).to_be_disabled()
    assert page.get_by_test_id("field-dataset").locator("option").count() >= 4


def test_live_run_updates_filters_feature_maps_and_curves(page: Any, ui: Any) -> None:
    page.goto("/")
    run_id = ui.start_run(page, epochs="6")  # long enough to be training still when it is paused below
    assert run_id
    expect(page.get_by_test_id("status")).to_have_text("training")
    ui.wait_for_seq_above(page, 0)
    first_seq = ui.seq(page)
    before = ui.canvas_pixels(page, "filter-canvas-0")
    ui.wait_for_seq_above(page, first_seq)
    page.wait_for_function("() => window.filterscopePerf.frames > 0")
    # The filters are drawn from the new snapshot: their pixels differ, not just the DOM.
    page.wait_for_function(
        "([id, old]) => document.querySelector(`[data-testid=${id}]`).toDataURL() !== old",
        arg=["filter-canvas-0", before])
    assert ui.lit_fraction(page, "filter-canvas-1") > 0.3
    assert ui.lit_fraction(page, "fmap-canvas-0") > 0.3
    expect(page.get_by_test_id("probbars").locator("li")).to_have_count(8)  # shapes has 8 classes
    page.wait_for_function("() => window.filterscope.views.curves.chart?.data[1].length > 5")

    # W / dW / ΔW draw different pictures of the same snapshot.
    page.get_by_test_id("mode-grad").click()
    expect(page.get_by_test_id("filters-panel")).to_contain_text("dL/dW")
    page.get_by_test_id("mode-weight").click()

    # Selecting a filter opens its per-input-channel kernels and shows its numbers.
    page.get_by_test_id("filter-canvas-1").click(position={"x": 5, "y": 5})
    expect(page.get_by_test_id("filter-detail")).to_be_visible()
    expect(page.get_by_test_id("filter-detail")).to_contain_text("8 input channels")
    expect(page.get_by_test_id("filter-info")).to_contain_text("‖W‖")

    # Another probe from the test set: a fresh snapshot shows it, even while paused (not once the run has ended,
    # which a short run may have done by now: paused first, then resumed).
    page.get_by_test_id("pause").click()
    expect(page.get_by_test_id("status")).to_have_text("paused")
    page.get_by_test_id("thumb-3").click()
    expect(page.get_by_test_id("probe-caption")).to_contain_text("test image #3", timeout=20_000)
    page.get_by_test_id("pause").click()  # Resume

    # The run ends by itself; the page says so and shows the test accuracy.
    expect(page.get_by_test_id("status")).to_have_text("finished", timeout=60_000)
    expect(page.get_by_test_id("curves-summary")).to_contain_text("test accuracy")
    expect(page.get_by_test_id("start")).to_be_enabled()
    expect(page.get_by_test_id("pause")).to_be_disabled()
    # What watching cost the run, as the engine measured it: a share, not a blank.
    expect(page.get_by_test_id("facts")).to_contain_text(re.compile(r"snapshots \d+\.\d% of training time"))


def test_pause_resume_and_a_second_viewer(new_page: Any, ui: Any) -> None:
    page = new_page()
    page.goto("/")
    run_id = ui.start_run(page, epochs="20")
    ui.wait_for_seq_above(page, 1)

    page.get_by_test_id("pause").click()
    expect(page.get_by_test_id("status")).to_have_text("paused")
    expect(page.get_by_test_id("pause")).to_have_text("Resume")
    paused_at = ui.seq(page)
    paused_step = page.evaluate("window.filterscope.store.run.step")

    # A second browser attaches through the shared URL and sees the same (paused) run.
    viewer = new_page()
    viewer.goto(f"/?run={run_id}")
    expect(viewer.get_by_test_id("status")).to_have_text("paused")
    viewer.wait_for_function("s => window.filterscope.store.snapshot?.seq === s", arg=paused_at)
    expect(viewer.get_by_test_id("field-model")).to_have_value("tiny")
    # It watches, but only the browser that started the run controls it: the page says so.
    expect(viewer.get_by_test_id("viewer-note")).to_be_visible()
    for control in ("pause", "step", "stop"):
        expect(viewer.get_by_test_id(control)).to_be_hidden()
    expect(viewer.get_by_test_id("field-lr")).to_be_disabled()
    expect(page.get_by_test_id("viewer-note")).to_be_hidden()
    # While the viewer connected and caught up, the paused page received nothing new.
    assert ui.seq(page) == paused_at
    assert page.evaluate("window.filterscope.store.run.step") == paused_step

    # Step: up to the next snapshot, then paused again.
    page.get_by_test_id("step").click()
    ui.wait_for_seq_above(page, paused_at)
    expect(page.get_by_test_id("status")).to_have_text("paused")

    # Space resumes (the keyboard shortcut); both pages see training go on.
    page.locator("body").click(position={"x": 5, "y": 790})
    page.keyboard.press(" ")
    expect(page.get_by_test_id("status")).to_have_text("training")
    ui.wait_for_seq_above(page, paused_at + 2)
    ui.wait_for_seq_above(viewer, paused_at + 2)

    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("status")).to_have_text("stopped")
    expect(viewer.get_by_test_id("status")).to_have_text("stopped")


def test_reconnect_catches_up_from_history(page: Any, ui: Any) -> None:
    page.goto("/")
    ui.start_run(page, epochs="20")
    ui.wait_for_seq_above(page, 1)
    steps_before = page.evaluate("window.filterscope.store.steps.x.length")
    # Drop the socket as a network hiccup would (any close code but 1000/4404 means: reconnect).
    page.evaluate("window.filterscope.session.socket.ws.close(4000, 'test')")
    expect(page.get_by_test_id("connection")).to_have_text("live")
    page.wait_for_function("n => window.filterscope.store.steps.x.length > n", arg=steps_before)
    # The history came again from the start: the first loss point is step 1, no duplicates.
    assert page.evaluate("""() => {
        const xs = window.filterscope.store.steps.x;
        return xs.every((x, i) => i === 0 || x > xs[i - 1]);
    }""")
    ui.wait_for_seq_above(page, 0)


def test_rejected_values_show_the_server_sentence(page: Any, ui: Any, console: Any) -> None:
    console.allow(r"status of 422")  # the browser logs every 4xx answer; these two are expected
    page.goto("/")
    page.get_by_test_id("field-lr").fill("0")
    page.get_by_test_id("start").click()
    error = page.get_by_test_id("form-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("lr")
    expect(error).to_contain_text("greater than 0")
    expect(page.get_by_test_id("field-lr")).to_have_attribute("aria-invalid", "")
    page.get_by_test_id("field-lr").fill("50")
    page.get_by_test_id("start").click()
    expect(error).to_contain_text("less than or equal to 10")
    assert "run=" not in page.url
    expect(page.get_by_test_id("status")).to_have_text("no run")


def test_unknown_run_says_so(page: Any) -> None:
    page.goto("/?run=doesnotexist")
    expect(page.get_by_test_id("notice")).to_contain_text("doesnotexist")
    expect(page.get_by_test_id("start")).to_be_enabled()
    assert "run=" not in page.url


def test_learning_rate_of_a_live_run(page: Any, ui: Any, console: Any) -> None:
    console.allow(r"status of 422")  # the refused value below
    page.goto("/")
    run_id = ui.start_run(page, epochs="20")
    ui.wait_for_seq_above(page, 0)
    lr = page.get_by_test_id("field-lr")
    expect(lr).to_be_enabled()  # the one setting a live run accepts
    expect(page.get_by_test_id("field-epochs")).to_be_disabled()
    lr.fill("0.01")
    lr.press("Enter")
    page.wait_for_function("() => window.filterscope.store.run.lr === 0.01")
    assert ui.http_run(run_id)["lr"] == 0.01
    lr.fill("50")
    lr.press("Enter")
    expect(page.get_by_test_id("form-error")).to_contain_text("less than or equal to 10")
    expect(lr).to_have_value("0.01")  # back to the rate the run has


def test_a_colour_first_layer_is_drawn_in_rgb(page: Any, ui: Any) -> None:
    page.goto("/")
    ui.start_run(page, dataset="shapes-color")
    ui.wait_for_seq_above(page, 0)
    expect(page.get_by_test_id("filters-conv1")).to_contain_text("(RGB)")
    # The diverging map only mixes blue, white and red; green-dominant pixels exist only in RGB rendering. The
    # store holds the new moment before the stream tick draws it (up to 333 ms later): wait for the drawing.
    count_greenish = """() => {
        const c = document.querySelector('[data-testid="filter-canvas-0"]');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 1] > d[i] + 40 && d[i + 1] > d[i + 2] + 40) n++;
        return n;
    }"""
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(f"({count_greenish})() > 0", timeout=10_000)
    greenish = page.evaluate(count_greenish)
    assert greenish > 0
    expect(page.get_by_test_id("filters-conv2")).not_to_contain_text("(RGB)")
