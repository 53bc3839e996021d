"""Signals that do not mislead: a layer no gradient reaches is 'dead' on the step-size chart even when weight decay
keeps its step inside the healthy band, the chart labels every decade, the 'whole run' colour scale of an ended run
is one scale over every moment (its largest values), and each layer says what its dead and near-duplicate filters
mean."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import http_json

pytestmark = pytest.mark.e2e

STATES = "() => [...document.querySelectorAll('[data-testid=ratio-state] [data-state]')].map((e) => e.dataset.state)"


def ended(server: str, config: dict[str, Any]) -> dict[str, Any]:
    run = http_json("POST", f"{server}/api/runs", config)
    deadline = time.monotonic() + 120
    while (run := http_json("GET", f"{server}/api/runs/{run['id']}"))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    return run


def test_sgd_at_1_is_dead_on_the_step_size_chart_not_healthy(page: Any, server: str) -> None:
    # from small initial weights in every layer its ReLUs die within the epoch (diagnose.py's 'dead': 25 of
    # conv2's 32 filters get no gradient), while weight decay keeps its step size inside the green band
    run = ended(server, {"dataset": "mnist", "model": "tiny", "optimizer": "sgd", "lr": 1.0, "epochs": 1,
                         "init": "small"})
    assert any(w["kind"] == "dead" for w in run["warnings"]), run["warnings"]
    page.goto(f"/?run={run['id']}")
    page.wait_for_function(f"() => ({STATES})().length === 2")
    states = page.evaluate(STATES)
    assert "dead" in states and "healthy" not in states, states
    expect(page.get_by_test_id("ratio-state")).to_contain_text("dead")
    # every power of ten of the log axis is labelled (it showed one label)
    ticks = page.evaluate("window.filterscope.views.ratios.chart.axes[1]._values.filter((v) => v)")
    assert len(ticks) >= 5 and "1e-3" in ticks, ticks


def test_a_default_run_is_healthy_on_the_step_size_chart(page: Any, server: str) -> None:
    run = ended(server, {"dataset": "shapes", "model": "tiny", "epochs": 1})
    page.goto(f"/?run={run['id']}")
    page.wait_for_function(f"() => ({STATES})().length === 2")
    assert "dead" not in page.evaluate(STATES)
    # Its last moment: the cosine schedule has all but stopped the steps, as it means to; not "too small to learn".
    page.wait_for_function("() => window.filterscope.store.snapshot?.seq === window.filterscope.store.head?.seq")
    states = page.evaluate(STATES)
    assert "small" not in states and "annealed" in states, states
    expect(page.get_by_test_id("ratio-state")).to_contain_text("as the schedule means them")


def test_the_whole_run_scale_of_an_ended_run_is_one_scale(page: Any, server: str) -> None:
    run = ended(server, {"dataset": "mnist", "model": "tiny", "epochs": 1, "train_subset": 3200})
    page.goto(f"/?run={run['id']}")
    page.wait_for_function("() => window.filterscope.store.snapshot !== null")
    bar = page.get_by_test_id("filters-conv1").locator(".colorbar-labels span").last
    expect(page.get_by_test_id("filters-conv1")).to_contain_text("whole run")
    expect(page.get_by_test_id("filters-conv1")).not_to_contain_text("so far")
    last = bar.inner_text()
    peak = page.evaluate("window.filterscope.store.head.layers[0].peaks.weight")
    assert float(last) == pytest.approx(peak, rel=0.02)  # the run's largest |W|, the last frame's peak
    page.get_by_test_id("timeline-first").click()
    page.wait_for_function("() => window.filterscope.store.snapshot?.step === 0")
    expect(bar).to_have_text(last)  # step 0 on the run's scale: faint, not rescaled to its own small values
    first = page.evaluate("window.filterscope.store.snapshot.layers[0].weight.maxAbs()")
    assert first < 0.5 * peak  # the growth of the weights this scale shows


def test_each_layer_says_what_dead_and_duplicate_filters_mean(page: Any, server: str) -> None:
    run = ended(server, {"dataset": "mnist", "model": "tiny", "epochs": 1, "train_subset": 1000})
    page.goto(f"/?run={run['id']}")
    page.get_by_test_id("mode-detects").click()
    for layer in ("conv1", "conv2"):
        health = page.get_by_test_id(f"health-{layer}")
        expect(health).to_contain_text("filters dead", timeout=30_000)
        expect(health).to_contain_text("Dead: the filter responds positively to no test image")
        expect(health).to_contain_text("Near-duplicate: its kernel has cosine above 0.95")


def test_choosing_a_model_puts_its_learning_rate_in_the_form_unless_one_was_set(page: Any) -> None:
    page.goto("/")
    lr, model = page.get_by_test_id("field-lr"), page.get_by_test_id("field-model")
    expect(lr).to_have_value("0.005")
    model.select_option("classic")
    expect(lr).to_have_value("0.002")  # what the server gives classic when no rate is named
    model.select_option("tiny")
    expect(lr).to_have_value("0.005")
    lr.fill("0.01")
    model.select_option("classic")
    expect(lr).to_have_value("0.01")  # the person's own rate stays
