"""Transfer learning in the browser: "fine-tune from here" on a finished run starts a run from its weights with
the chosen layers frozen, and the page says where it started and that those layers never moved; "pretrained
vs scratch" opens the two side by side, where the pretrained start learns the small set faster."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import http_json

pytestmark = pytest.mark.e2e

# A finished run shown as it ended: not walking through its start in slow motion.
SETTLED = "() => window.filterscope.store.status === 'finished' && window.filterscope.store.slow === null"
SOURCE = {"dataset": "fashion-mnist", "model": "tiny", "epochs": 2, "train_subset": 2000, "seed": 1}


def finished_source(base: str) -> str:
    """A run pretrained on fashion-mnist (a few seconds), by HTTP as any client would start one."""
    run = http_json("POST", f"{base}/api/runs", SOURCE)
    deadline = time.monotonic() + 120
    while http_json("GET", f"{base}/api/runs/{run['id']}")["status"] != "finished":
        assert time.monotonic() < deadline, "the source run did not finish"
        time.sleep(0.3)
    return str(run["id"])


def test_fine_tune_from_here_then_pretrained_vs_scratch(page: Any, ui: Any, server: str) -> None:
    source = finished_source(server)
    page.goto(f"/?run={source}")
    page.wait_for_function(SETTLED)
    expect(page.get_by_test_id("finetune-from")).to_contain_text(f"From run {source} (tiny on fashion-mnist)")
    expect(page.get_by_test_id("finetune-dataset")).to_have_value("mnist")  # another data set of one channel
    page.get_by_test_id("finetune-epochs").fill("2")
    page.get_by_test_id("finetune-freeze-conv1").check()
    page.get_by_test_id("finetune-start").click()
    page.wait_for_url(re.compile(r"[?&]run=(?!" + source + r")\w+"))
    tuned = page.evaluate("new URL(location.href).searchParams.get('run')")
    origin = page.get_by_test_id("transfer-origin")
    expect(origin).to_contain_text(f"Fine-tuned from run {source} (tiny on fashion-mnist)")
    expect(origin).to_contain_text("conv1, conv2, fc1, out start with its weights; frozen: conv1")
    page.wait_for_function(SETTLED, timeout=120_000)
    run = ui.http_run(tuned)
    assert run["config"]["dataset"] == "mnist" and run["config"]["train_subset"] == 300
    assert run["config"]["init_from"]["run"] == source and run["config"]["freeze"] == ["conv1"]
    expect(page.get_by_test_id("frozen-conv1")).to_be_visible()
    expect(page.get_by_test_id("frozen-conv2")).to_have_count(0)
    expect(page.get_by_test_id("measures-conv1")).to_contain_text("frozen: the optimizer does not move it")
    expect(page.get_by_test_id("measures-conv2")).to_contain_text("since the pretrained start (step 0)")
    expect(page.get_by_test_id("ratio-state")).to_contain_text("conv1 frozen")
    # How far each layer moved from the pretrained start: conv1 not at all, conv2 away from it, at every moment.
    summary = page.get_by_test_id("moved-summary")
    expect(summary).to_contain_text("from the pretrained start: conv1 0.0 (frozen) · conv2")
    page.wait_for_function("() => window.filterscope.views.moved.points.size === window.filterscope.store.index.length")
    moved = page.evaluate("[...window.filterscope.views.moved.points.values()]"
                          ".map((p) => [p.moved.conv1, p.moved.conv2])")
    assert all(c1 == 0 for c1, _ in moved) and max(c2 for _, c2 in moved) > 0.01
    # What the page holds: conv1 at the end is conv1 at step 0, entry for entry; conv2 has moved.
    same = page.evaluate("""() => {
        const s = window.filterscope.store, a = s.first.layers, b = s.snapshot.layers;
        const eq = (x, y) => x.values().every((v, i) => v === y.values()[i]);
        return [eq(a[0].weight, b[0].weight), eq(a[1].weight, b[1].weight)];
    }""")
    assert same == [True, False]

    page.get_by_test_id("finetune-compare").click()
    page.wait_for_url(re.compile(r"/compare\?sweep=s\w+"))
    page.wait_for_function("() => window.filterscope.store.runs.length === 2")
    page.wait_for_function("() => !window.filterscope.store.live && window.filterscope.store.runs.every("
                           "(r) => r.status === 'finished')", timeout=180_000, polling=500)
    expect(page.get_by_test_id("row-init_from")).to_have_class(re.compile("differs"))
    expect(page.get_by_test_id("row-init_from")).to_contain_text(f"run {tuned} @ snapshot")
    expect(page.get_by_test_id("row-init_from")).to_contain_text("random")
    expect(page.get_by_test_id("compare-table")).to_contain_text("pretrained")
    expect(page.get_by_test_id("compare-table")).to_contain_text("from scratch")
    best = page.evaluate("window.filterscope.store.runs.map((r) => Math.max(...r.history.map((h) => h.test_accuracy)))")
    assert best[0] > best[1] + 0.05, best  # the pretrained start learns the 300 images faster
