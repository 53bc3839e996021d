"""Comparing runs in the browser: one click starts a learning-rate sweep from the form's settings, and the
compare view draws every run's curves and filters, matched, on one timeline."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


@pytest.mark.slow  # three whole default runs: on a shorter one the smallest rate's steps are not yet the smallest
def test_one_click_lr_sweep_opens_a_compare_view_that_moves_every_row(page: Any, ui: Any) -> None:
    page.goto("/")
    ui.fill(page, lr="0.005")
    page.get_by_test_id("sweep-lr").click()
    page.wait_for_url(re.compile(r"/compare\?sweep=s\w+"))
    page.wait_for_function("() => window.filterscope.store.runs.length === 3", timeout=20_000)
    runs = page.evaluate("window.filterscope.store.runs.map((r) => r.config.lr)")
    assert runs == [0.0005, 0.005, 0.05]
    # The runs train one after another or side by side; the page follows them until they end
    page.wait_for_function("() => !window.filterscope.store.live && window.filterscope.store.runs.every("
                           "(r) => r.status === 'finished')", timeout=120_000, polling=500)
    expect(page.get_by_test_id("row-lr")).to_have_class(re.compile("differs"))
    expect(page.get_by_test_id("row-model")).not_to_have_class(re.compile("differs"))
    expect(page.get_by_test_id("row-best")).to_contain_text("%")

    # Three loss curves, three pairs of accuracy lines, three update-ratio curves, with data
    loss = page.evaluate("window.filterscope.views.charts.charts.loss.data")
    assert len(loss) == 7 and all(sum(v is not None for v in ys) > 100 for ys in loss[1:])  # per batch, smoothed
    acc = page.evaluate("window.filterscope.views.charts.charts.acc.data")
    assert len(acc) == 7 and all(v is not None for ys in acc[1:] for v in ys)
    ratio = page.evaluate("window.filterscope.views.charts.charts.ratio.data")
    # a ten times larger learning rate takes larger steps: each run's median step above the one before
    medians = page.evaluate("""(d) => d.slice(1).map((ys) => {
        const v = ys.filter((x) => x !== null).sort((a, b) => a - b);
        return v[Math.floor(v.length / 2)];
    })""", ratio)
    assert medians[0] < medians[1] < medians[2]

    # Every run's filters drawn, the later rows matched to the first with a cosine per pair
    for i in range(3):
        page.wait_for_function("i => document.querySelector(`[data-testid=compare-canvas-${i}]`)?.width > 0", arg=i)
    for i in (1, 2):
        expect(page.get_by_test_id(f"compare-row-{i}").locator(".sims span")).to_have_count(8)
        expect(page.get_by_test_id(f"compare-row-info-{i}")).to_contain_text("matched to the first run")
    ends = [ui.canvas_pixels(page, f"compare-canvas-{i}") for i in range(3)]
    page.get_by_test_id("compare-slider").fill("0")  # the shared timeline back to step 0
    for i in range(3):
        page.wait_for_function("([i, old]) => document.querySelector(`[data-testid=compare-canvas-${i}]`)"
                               ".toDataURL() !== old", arg=[i, ends[i]])
        expect(page.get_by_test_id(f"compare-row-{i}")).to_contain_text("step 0")
    # By epoch: the end of epoch 1 in every row
    page.get_by_test_id("compare-align").select_option("epoch")
    page.get_by_test_id("compare-slider").fill("1")
    for i in range(3):
        expect(page.get_by_test_id(f"compare-row-{i}")).to_contain_text("end of epoch 1")

    csv = page.evaluate("window.filterscope.views.charts.csv('steps')")
    head = csv.splitlines()[0].split(",")
    assert head[0] == "step" and len([h for h in head if h.endswith("_loss")]) == 3
    assert len(csv.splitlines()) > 100


def test_runs_picked_in_the_list_open_side_by_side(page: Any, ui: Any) -> None:
    page.goto("/")
    first = ui.start_run(page, epochs="1", train_subset="500")  # any two finished runs: 16 steps each
    page.wait_for_function("() => window.filterscope.store.run?.status === 'finished'", timeout=60_000)
    page.get_by_test_id("new-run").click()
    second = ui.start_run(page, epochs="1", seed="3", train_subset="500")
    page.wait_for_function("() => window.filterscope.store.run?.status === 'finished'", timeout=60_000)
    page.get_by_test_id(f"run-pick-{first}").check()
    expect(page.get_by_test_id("compare-picked")).to_be_hidden()
    page.get_by_test_id(f"run-pick-{second}").check()
    link = page.get_by_test_id("compare-picked")
    expect(link).to_be_visible()
    link.click()
    page.wait_for_url(re.compile(r"/compare\?runs="))
    page.wait_for_function("() => window.filterscope.store.runs.length === 2", timeout=20_000)
    expect(page.get_by_test_id("row-seed")).to_have_class(re.compile("differs"))
