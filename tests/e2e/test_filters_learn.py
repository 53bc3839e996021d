"""Seeing filters learn: step 0 beside now, a colour scale that keeps time, and how far each layer moved."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

# Mean distance of a canvas's filter pixels from white (0 = blank, about 1 = saturated): how vivid it looks.
INK = """c => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let sum = 0, n = 0;
    for (let i = 0; i < d.length; i += 4) {
        const gap = d[i] === 0x3a && d[i + 1] === 0x3f && d[i + 2] === 0x47;
        const inner = d[i] === 0x6b && d[i + 1] === 0x71 && d[i + 2] === 0x7b;
        if (!d[i + 3] || gap || inner) continue;
        sum += (3 * 255 - d[i] - d[i + 1] - d[i + 2]) / (3 * 255);
        n++;
    }
    return sum / n;
}"""


def ink(page: Any, testid: str) -> float:
    return float(page.get_by_test_id(testid).evaluate(INK))


@pytest.mark.slow  # a whole epoch of mnist: filters that have become detectors, to tell from their start
def test_filters_grow_from_faint_noise_on_one_scale(page: Any, ui: Any) -> None:
    page.goto("/")
    ui.start_run(page, dataset="mnist", epochs="1")
    expect(page.get_by_test_id("status")).to_have_text("finished", timeout=60_000)
    # A run that ends within the slow start's few seconds is still being walked through: "now" is its end.
    page.wait_for_function("() => window.filterscope.store.slow === null", timeout=20_000)

    # Step 0 beside now, on the whole run's scale: the random start is faint, what was learned is vivid.
    page.get_by_test_id("show-both").click()
    expect(page.get_by_test_id("filter-start-canvas-0")).to_be_visible()
    expect(page.get_by_test_id("filter-canvas-0")).to_be_visible()
    expect(page.get_by_test_id("filters-conv1")).to_contain_text("W at step 0")
    now = ink(page, "filter-canvas-0")
    assert ink(page, "filter-start-canvas-0") < 0.25 * now

    # Step 0 alone keeps the whole run's scale; scaled to its own moment it looks as vivid as noise does,
    # and the colour bar says which scale is on.
    page.get_by_test_id("show-start").click()
    expect(page.get_by_test_id("filter-canvas-0")).to_be_hidden()
    expect(page.get_by_test_id("filters-conv1")).to_contain_text("whole run")
    start = ink(page, "filter-start-canvas-0")
    assert start < 0.25 * now, (start, now)
    page.get_by_test_id("scale").select_option("moment")
    expect(page.get_by_test_id("filters-conv1")).to_contain_text("now")
    assert ink(page, "filter-start-canvas-0") > 2 * start

    # Each layer says how far its filters moved from step 0 and how smooth they became.
    line = page.get_by_test_id("measures-conv1")
    expect(line).to_contain_text("cosine to W₀")
    cosine = float(re.search(r"cosine to W₀ ([-\d.]+)", line.inner_text()).group(1))
    smooth = float(re.search(r"smoothness ([-\d.]+)", line.inner_text()).group(1))
    assert cosine < 0.6 and smooth > 0.3

    # Hover and the filter's detail: the same comparison for one filter.
    page.get_by_test_id("show-now").click()
    page.get_by_test_id("filter-canvas-0").hover(position={"x": 5, "y": 5})
    expect(page.get_by_test_id("filter-info")).to_contain_text("since step 0: cosine")
    page.get_by_test_id("filter-canvas-0").click(position={"x": 5, "y": 5})
    expect(page.get_by_test_id("filter-detail")).to_contain_text("W at step 0")
    expect(page.get_by_test_id("filter-detail")).to_contain_text("Since step 0: cosine")


def test_initial_weights_are_a_setting_with_an_explanation(page: Any, ui: Any) -> None:
    page.goto("/")
    expect(page.get_by_test_id("field-init")).to_have_value("small-first")
    expect(page.get_by_test_id("init-hint")).to_contain_text("faint noise")
    page.get_by_test_id("field-init").select_option("default")
    expect(page.get_by_test_id("init-hint")).to_contain_text("PyTorch's default")
    run_id = ui.start_run(page, init="default", epochs="1")
    assert ui.http_run(run_id)["config"]["init"] == "default"
