"""The page without a mouse and on a phone: Tab reaches every filter (a roving tabindex per grid), Enter opens the
inspector in view with the focus in it, Escape closes it back onto the tile; at 390 px nothing scrolls sideways and
the panels stack in one column; a long run's epoch numbers under the timeline do not overlap."""

from __future__ import annotations

import time
from itertools import pairwise
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import http_json

pytestmark = pytest.mark.e2e

CONFIG = {"dataset": "shapes", "model": "tiny", "epochs": 2, "snapshot_every": 10}


def finished(server: str, config: dict[str, Any]) -> dict[str, Any]:
    run = http_json("POST", f"{server}/api/runs", config)
    deadline = time.monotonic() + 180
    while (run := http_json("GET", f"{server}/api/runs/{run['id']}"))["status"] != "finished":
        assert time.monotonic() < deadline and run["status"] in ("queued", "running"), run
        time.sleep(0.2)
    return run


@pytest.fixture(scope="module")
def run(server: str) -> dict[str, Any]:
    return finished(server, CONFIG)


def opened(page: Any, run: dict[str, Any]) -> None:
    page.goto(f"/?run={run['id']}")
    page.wait_for_function("() => window.filterscope.store.snapshot !== null")
    expect(page.get_by_test_id("filter-canvas-0")).to_be_visible()


def focused(page: Any) -> dict[str, Any]:
    return dict(page.evaluate("""() => { const e = document.activeElement;
        return {label: e.getAttribute('aria-label'), cls: e.className, id: e.id, tabindex: e.tabIndex}; }"""))


def in_view(page: Any, testid: str) -> bool:
    return bool(page.get_by_test_id(testid).evaluate(
        "e => { const r = e.getBoundingClientRect(); return r.top >= -1 && r.top < innerHeight - 40; }"))


def test_tab_reaches_a_filter_arrows_move_and_enter_opens_the_inspector_in_view(page: Any,
                                                                            run: dict[str, Any]) -> None:
    opened(page, run)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.testid") == "skip-to-filters"
    page.keyboard.press("Enter")  # past the settings and the runs list
    for _ in range(20):
        page.keyboard.press("Tab")
        if focused(page)["cls"] == "tile-key":
            break
    assert focused(page)["label"] == "conv1 filter #0", "Tab never reached a filter"
    # One stop per grid: the next Tab leaves conv1's tiles for the next layer's links.
    grid = page.get_by_test_id("filter-canvas-0").locator("xpath=..")
    assert grid.locator(".tile-key").count() == 8 and grid.locator(".tile-key[tabindex='0']").count() == 1
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert focused(page)["label"] == "conv1 filter #2"
    expect(page.get_by_test_id("filter-info")).to_contain_text("conv1 #2:")  # what hovering says, said on focus
    label_before = page.get_by_test_id("timeline-label").inner_text()
    page.keyboard.press("ArrowLeft")  # moves among the tiles, not the timeline
    assert focused(page)["label"] == "conv1 filter #1"
    assert page.get_by_test_id("timeline-label").inner_text() == label_before
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("filter-detail")).to_be_visible()
    expect(page.get_by_test_id("kernel-title")).to_contain_text("conv1 · filter #1 ·")
    page.wait_for_function("() => document.activeElement.id === 'filter-detail'")
    page.wait_for_function("""() => { const r = document.getElementById('filter-detail').getBoundingClientRect();
        return r.top >= -1 && r.top < innerHeight - 40; }""")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("filter-detail")).to_be_hidden()
    assert focused(page)["label"] == "conv1 filter #1" and focused(page)["tabindex"] == 0


def test_a_click_on_a_tile_brings_the_inspector_into_view(page: Any, run: dict[str, Any]) -> None:
    opened(page, run)
    canvas = page.get_by_test_id("filter-canvas-1")
    canvas.scroll_into_view_if_needed()
    canvas.click(position={"x": 3, "y": 3})
    expect(page.get_by_test_id("kernel-title")).to_contain_text("conv2 · filter #0 ·")
    page.wait_for_function("""() => { const r = document.getElementById('filter-detail').getBoundingClientRect();
        return r.top >= -1 && r.top < innerHeight - 40; }""")
    # Its × closes it with the keyboard on the tile it came from.
    page.get_by_test_id("filter-detail").locator("[data-role=close]").click()
    expect(page.get_by_test_id("filter-detail")).to_be_hidden()
    assert focused(page)["label"] == "conv2 filter #0"


def test_at_390_px_the_page_is_one_column_with_no_sideways_scroll(new_page: Any, run: dict[str, Any]) -> None:
    page = new_page(390, 844)
    opened(page, run)
    page.wait_for_timeout(300)  # the grids lay themselves out to the width they were given
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    lefts = {page.get_by_test_id(t).evaluate("e => Math.round(e.getBoundingClientRect().left)")
             for t in ("filters-panel", "curves-panel", "fmaps-panel", "inspect-panel")}
    assert len(lefts) == 1, f"the panels are not in one column: {lefts}"
    for testid in ("filter-canvas-0", "filter-canvas-1", "loss-chart", "ratio-chart", "drawpad"):
        right = page.get_by_test_id(testid).evaluate("e => e.getBoundingClientRect().right")
        assert right <= 390, f"{testid} ends at x = {right}"
    # The grids use the width they have: conv1's 8 tiles in rows of equal length (4 + 4, not 7 + 1).
    cols, rows = page.evaluate("""() => { const g = window.filterscope.views.filters.layers[0].now.grid;
        return [g.cols, g.rows]; }""")
    assert cols * rows == 8


def test_a_60_epoch_runs_epoch_numbers_do_not_overlap(page: Any, server: str) -> None:
    run = finished(server, {"dataset": "shapes", "model": "tiny", "epochs": 60, "train_subset": 64,
                            "batch_size": 32, "snapshot_every": 50})
    page.goto(f"/?run={run['id']}")
    page.wait_for_function("() => window.filterscope.store.index.filter((r) => r.epoch_end).length === 60"
                           " && document.querySelectorAll('.timeline .tick').length === 60")
    page.wait_for_function("() => [...document.querySelectorAll('.timeline .tick')].some((t) => t.textContent)")
    boxes = page.evaluate("""() => [...document.querySelectorAll('.timeline .tick')]
        .filter((t) => t.textContent).map((t) => { const r = t.getBoundingClientRect(); return [r.left, r.right]; })""")
    assert 3 <= len(boxes) < 60
    assert all(a[1] < b[0] for a, b in pairwise(boxes)), boxes


def test_start_pause_and_step_by_the_keyboard_keep_it_on_the_buttons(page: Any, ui: Any) -> None:
    page.goto("/")
    ui.fill(page, epochs="20")
    page.get_by_test_id("start").focus()
    page.keyboard.press("Enter")
    # Start is locked for the run it started: the keyboard goes on to Pause, and Enter there pauses.
    expect(page.get_by_test_id("pause")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("status")).to_have_text("paused")
    expect(page.get_by_test_id("pause")).to_be_focused()
    # Step locks itself while its request runs, then has the keyboard back: Enter again steps again.
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("step")).to_be_focused()
    for _ in range(2):
        before = ui.seq(page)
        page.keyboard.press("Enter")
        ui.wait_for_seq_above(page, before)
        expect(page.get_by_test_id("step")).to_be_focused()
    page.get_by_test_id("stop").click()


def test_the_page_stays_where_it_was_when_start_is_pressed(page: Any, ui: Any) -> None:
    page.goto("/")
    ui.fill(page, epochs="20")
    page.mouse.wheel(0, 300)
    page.wait_for_function("() => scrollY >= 299")
    top = "e => e.getBoundingClientRect().top"
    before = page.get_by_test_id("start").evaluate(top)
    page.get_by_test_id("start").click()
    ui.wait_for_seq_above(page, 5)
    page.wait_for_timeout(500)  # the panels have grown with the run's first moments
    moved, scrolled = page.get_by_test_id("start").evaluate(top) - before, page.evaluate("scrollY") - 300
    # The browser may scroll by the timeline's bar, which appears above everything once a run is open (~90 px),
    # so that what was on screen stays there; no more.
    assert abs(moved) < 40 and scrolled < 150, f"Start moved {moved:.0f} px on screen, the page {scrolled:.0f} px"
    page.get_by_test_id("stop").click()
