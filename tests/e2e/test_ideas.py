"""The course's ideas on the page: chance on the loss chart, train beside test accuracy, the step-size chart,
feature maps before ReLU / after / pooled, the probe's own loss, a warning where the person looks, presets."""

from __future__ import annotations

import math
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

# The share of a canvas row's pixels (inside the plot) close to a colour: a drawn line, not a guess.
ROW_SHARE = """([testid, row, rgb]) => {
    const u = window.filterscope.views[testid];
    const c = u.chart.ctx.canvas;
    const { left, width } = u.chart.bbox;
    const d = c.getContext('2d').getImageData(left, Math.round(row), width, 1).data;
    let hits = 0;
    for (let i = 0; i < d.length; i += 4) {
        const near = [0, 1, 2].every((k) => Math.abs(d[i + k] - rgb[k]) < 40);
        if (near) hits++;
    }
    return hits / (d.length / 4);
}"""


@pytest.mark.slow  # the default shapes run whole: both epochs' train accuracy at 90 % or more
def test_chance_train_accuracy_step_sizes_stages_and_the_probes_loss(page: Any, ui: Any) -> None:
    page.goto("/")
    ui.start_run(page)  # shapes: 8 classes
    page.wait_for_function("() => window.filterscope.store.run?.status === 'finished'", timeout=60_000)
    run = page.evaluate("window.filterscope.store.run")
    spe = run["steps_per_epoch"]
    # The last batch of the last epoch, not "batch 0" of one past it
    expect(page.get_by_test_id("epoch-text")).to_have_text(f"epoch 2 of 2 · batch {spe} of {spe}")
    expect(page.get_by_test_id("facts")).to_contain_text(f"{run['samples_seen']:,} images seen")
    chance = page.evaluate("window.filterscope.views.curves.chance")
    assert chance == pytest.approx(math.log(8))
    page.wait_for_timeout(600)  # the charts redraw at most twice a second
    row = page.evaluate("() => { const c = window.filterscope.views.curves; "
                        "return c.chart.valToPos(c.chance, 'loss', true); }")
    assert page.evaluate(ROW_SHARE, ["curves", row, [100, 116, 139]]) > 0.3  # the dashed chance line
    # Per epoch, the accuracy on training images beside the test accuracy (the chart follows within 0.5 s)
    page.wait_for_function("() => window.filterscope.views.curves.chart.data[4].filter((v) => v !== null)"
                           ".length === 2")
    train = page.evaluate("window.filterscope.views.curves.chart.data[4].filter((v) => v !== null)")
    assert len(train) == 2 and all(90 <= v <= 100 for v in train)
    expect(page.get_by_test_id("curves-summary")).to_contain_text("train accuracy")
    # One smoothed update-ratio line per conv layer, over every step
    data = page.evaluate("window.filterscope.views.ratios.chart.data")
    assert len(data) == 3 and len(data[1]) == len(data[0]) > 50 and all(v is None or v > 0 for v in data[1])
    expect(page.get_by_test_id("probe-loss")).to_contain_text("−log p(")

    # ΔW on W's scale: the colour bar spans W's range, far wider than the updates' own
    bar = page.get_by_test_id("filters-conv1").locator(".colorbar-labels span").last
    w_text = bar.inner_text()
    page.get_by_test_id("mode-update").click()
    expect(bar).not_to_have_text(w_text)
    assert float(bar.inner_text()) < float(w_text)
    page.get_by_test_id("scale").select_option("weight")
    expect(bar).to_have_text(w_text)
    page.get_by_test_id("scale").select_option("run")
    page.get_by_test_id("mode-weight").click()

    # Feature maps: before ReLU is signed (blue where negative), pooling halves the maps
    def blue() -> float:
        return float(page.get_by_test_id("fmap-canvas-0").evaluate("""c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 2] > d[i] + 40) n++;
            return n / (d.length / 4);
        }"""))

    before = ui.canvas_pixels(page, "fmap-canvas-0")
    assert blue() == 0  # after ReLU: nothing negative is left
    page.get_by_test_id("fmap-stage-conv1-before").click()
    expect(page.get_by_test_id("fmap-canvas-0")).to_have_attribute("data-stage", "before")
    assert ui.canvas_pixels(page, "fmap-canvas-0") != before
    assert blue() > 0.01  # before it: the negative responses ReLU removes
    expect(page.get_by_test_id("fmaps-panel")).to_contain_text("24×24 · before ReLU")
    page.get_by_test_id("fmap-stage-conv1-pooled").click()
    expect(page.get_by_test_id("fmaps-panel")).to_contain_text("12×12 · after pooling")
    page.get_by_test_id("fmap-stage-conv1-after").click()
    expect(page.get_by_test_id("fmaps-panel")).to_contain_text("24×24 · after ReLU")


def test_a_learning_rate_far_too_high_is_warned_about_above_the_panels(page: Any, ui: Any) -> None:
    page.goto("/")
    ui.start_run(page, dataset="mnist", optimizer="sgd", lr="1", epochs="1", snapshot_every="20")
    warning = page.get_by_test_id("warnings")
    expect(warning).to_be_visible(timeout=60_000)
    expect(warning).to_contain_text("the learning rate 1 is too high for SGD")
    page.wait_for_function("() => window.filterscope.views.curves.warnings.length > 0")
    # "at step N" takes the timeline there (from the default initial weights the loss explodes and the run ends
    # 'diverged'; from small ones in every layer its ReLUs die and it ends 'finished' at chance)
    page.wait_for_function("() => ['finished', 'diverged'].includes(window.filterscope.store.run?.status)",
                           timeout=60_000)
    step = page.evaluate("window.filterscope.store.warnings[0].step")
    warning.get_by_role("button").first.click()
    page.wait_for_function("s => window.filterscope.store.snapshot?.step <= s "
                           "&& window.filterscope.store.cursor !== null", arg=step)
    # Opened again from its link, the warning is still there
    page.reload()
    expect(page.get_by_test_id("warnings")).to_contain_text("too high for SGD", timeout=20_000)


def test_the_overfitting_preset_fills_the_form(page: Any) -> None:
    page.goto("/")
    page.get_by_test_id("preset-overfit").click()
    assert page.get_by_test_id("field-train_subset").input_value() == "500"
    assert page.get_by_test_id("field-epochs").input_value() == "60"
    assert page.get_by_test_id("field-dropout").input_value() == "0"
    expect(page.get_by_test_id("preset-hint")).to_contain_text("train accuracy")
