"""What each filter detects, on the page: the "detects" mode draws every filter as a mosaic of real test-image
patches, which change from step 0 to the end; the kernel inspector shows the 9 patches large, and a click on one
makes its image the probe."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

# Share of a canvas's pixels that are neither the gap colour, nor an empty cell, nor transparent: patches drawn.
PATCHED = """c => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let lit = 0;
    for (let i = 0; i < d.length; i += 4) {
        const gap = d[i] === 0x3a && d[i + 1] === 0x3f && d[i + 2] === 0x47;
        const empty = d[i] === 0x22 && d[i + 1] === 0x26 && d[i + 2] === 0x2c;
        if (d[i + 3] && !gap && !empty) lit++;
    }
    return lit / (d.length / 4);
}"""


def patched(page: Any, testid: str) -> float:
    return float(page.get_by_test_id(testid).evaluate(PATCHED))


def test_detects_draws_patch_mosaics_that_change_from_step_0_and_opens_them_large(page: Any, ui: Any,
                                                                                   artifacts: Any) -> None:
    page.goto("/")
    # 32 steps an epoch, so that epoch 1's analysis comes soon; 20 epochs, so that it is still training then
    run_id = ui.start_run(page, dataset="mnist", epochs="20", train_subset="1000")
    page.wait_for_function("() => window.filterscope.store.analyses.length >= 2", timeout=60_000)
    page.get_by_test_id("pause").click()  # paused, its probe can still change (not once it has ended)
    expect(page.get_by_test_id("status")).to_have_text("paused", timeout=20_000)
    assert ui.http_run(run_id)["analyses"][0] == 0

    page.get_by_test_id("mode-detects").click()
    expect(page.get_by_test_id("filters-conv1")).to_contain_text("what each filter detects at step")
    page.wait_for_function("() => window.filterscope.store.testPixels !== null")
    page.wait_for_function("""() => { const c = document.querySelector('[data-testid=filter-canvas-1]');
                                      return c && c.width > 100; }""")
    for canvas in ("filter-canvas-0", "filter-canvas-1"):
        assert patched(page, canvas) > 0.3, canvas  # mosaics of real images, not an empty grid
    expect(page.get_by_test_id("health-conv2")).to_contain_text("filters dead")
    page.wait_for_url(re.compile(r"mode=detects"))
    page.screenshot(path=str(artifacts / "detects.png"), full_page=True)

    # Step 0 beside now: the random start's favourite patches are others than the trained filters'.
    page.get_by_test_id("show-both").click()
    expect(page.get_by_test_id("filters-conv1")).to_contain_text("at step 0, its random start")
    page.wait_for_function("""() => { const c = document.querySelector('[data-testid=filter-start-canvas-0]');
                                      return c && c.width > 20; }""")
    assert ui.canvas_pixels(page, "filter-start-canvas-0") != ui.canvas_pixels(page, "filter-canvas-0")
    page.get_by_test_id("show-now").click()

    # One filter opened: its 9 patches large; a click makes that test image the probe.
    page.get_by_test_id("filter-canvas-0").click(position={"x": 5, "y": 5})
    expect(page.get_by_test_id("kernel-patches")).to_be_visible()
    expect(page.get_by_test_id("kernel-patches-caption")).to_contain_text("responds to most at step")
    first = page.get_by_test_id("patch-0")
    index = int(first.get_attribute("data-index"))
    first.click()
    expect(page.get_by_test_id("probe-caption")).to_contain_text(f"#{index}", timeout=20_000)
