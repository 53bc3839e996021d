"""How long one snapshot takes to draw, measured in the browser (performance.now around the views' draw)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

# A frame at 60 Hz is 16.7 ms; the page should leave most of it to the browser even on a slow CI machine.
BUDGET_MS = 12.0


@pytest.mark.parametrize(("model", "dataset"), [("tiny", "shapes"), ("classic", "mnist")])
def test_snapshot_draw_time(page: Any, ui: Any, artifacts: Path, model: str, dataset: str) -> None:
    page.goto("/")
    ui.start_run(page, model=model, dataset=dataset, epochs="5", snapshot_every="2")
    page.wait_for_function("() => window.filterscopePerf.snapshotDraws.length >= 16", timeout=60_000)
    summary = page.evaluate("""() => {
        const d = window.filterscopePerf.snapshotDraws.slice(1);  // the first one also builds the DOM
        const s = [...d].sort((a, b) => a - b);
        return {count: s.length, median: s[Math.floor(s.length / 2)], p95: s[Math.floor(0.95 * s.length)],
                max: s[s.length - 1], first: window.filterscopePerf.snapshotDraws[0]};
    }""")
    (artifacts / f"draw-time-{model}.json").write_text(json.dumps(summary, indent=2))
    assert summary["median"] < BUDGET_MS, summary
