"""The slow start: live, a fresh run's first 100 steps pass in under a second; the page shows each of their stored
moments at a pace an eye can follow (at least 3 s, none skipped), says so, then goes live. Off (remembered in the
browser), or Live pressed, the page follows the head at once."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import _stop_my_runs, http_json

pytestmark = pytest.mark.e2e

# Every moment the page shows, with the time, whether it was following the head, and the head's step then.
RECORD = """() => {
    const s = window.filterscope.store;
    window.shown = [];
    s.on('snapshot', () => window.shown.push({seq: s.snapshot.seq, step: s.snapshot.step, t: performance.now(),
                                              following: s.cursor === null, slow: s.slow !== null}));
}"""
CAUGHT_UP = """() => { const s = window.filterscope.store;
    return s.slow === null && s.cursor === null && s.snapshot === s.head && s.head.step > 100; }"""


def start_default_run(page: Any) -> str:
    """Press Start with the form's defaults (the run a first-time learner starts); the run's id."""
    page.get_by_test_id("start").click()
    page.wait_for_url(re.compile(r"[?&]run=\w+"))
    return str(page.evaluate("new URL(location.href).searchParams.get('run')"))


def test_a_fresh_runs_start_is_shown_slowly_whole_then_live(page: Any, server: str) -> None:
    page.goto("/")
    page.evaluate(RECORD)
    run_id = start_default_run(page)
    expect(page.get_by_test_id("timeline-label")).to_contain_text(re.compile(r"the first 100 steps .* live in \d+ s"))
    page.wait_for_function(CAUGHT_UP, timeout=60_000)
    shown = page.evaluate("window.shown")
    stored = http_json("GET", f"{server}/api/runs/{run_id}/snapshots")
    dense = [r["seq"] for r in stored if r["step"] <= 100]
    assert len(dense) >= 29, dense  # step 0, the first 10 batches, then every 5 to 100
    in_start = [m for m in shown if m["step"] <= 100]
    assert [m["seq"] for m in in_start] == dense, "the slow start skipped or repeated a stored moment"
    assert not any(m["following"] for m in in_start), "a moment of the start was shown as live, not slowed"
    took = in_start[-1]["t"] - in_start[0]["t"]
    assert took >= 3000, f"the first 100 steps took {took:.0f} ms on the page"
    assert shown[-1]["following"] and not shown[-1]["slow"]
    expect(page.get_by_test_id("timeline-label")).to_contain_text("· live")


def test_live_ends_the_slow_start_and_off_is_remembered(page: Any, server: str) -> None:
    page.goto("/")
    start_default_run(page)
    page.wait_for_function("() => window.filterscope.store.slow !== null")
    page.get_by_test_id("timeline-live").click()  # at once, not after the start
    assert page.evaluate("() => { const s = window.filterscope.store; return s.slow === null && s.cursor === null; }")
    expect(page.get_by_test_id("timeline-slow")).to_be_checked()
    page.get_by_test_id("timeline-slow").uncheck()
    _stop_my_runs(page)

    page.goto("/")
    page.evaluate(RECORD)
    start_default_run(page)
    expect(page.get_by_test_id("timeline-slow")).not_to_be_checked()
    page.wait_for_function("() => window.filterscope.store.head?.step > 100", timeout=60_000)
    shown = page.evaluate("window.shown")
    assert shown and all(m["following"] and not m["slow"] for m in shown), "with the slow start off the page lagged"
    assert page.evaluate("window.filterscope.store.cursor") is None


def test_space_in_the_slow_start_pauses_training_and_its_moments_are_on_the_moved_chart(page: Any) -> None:
    page.goto("/")
    start_default_run(page)
    # The moved chart takes each live moment as it comes, while the slow start shows an earlier one: after the
    # run's history it fetched as it opened, its points go on growing with the live moments.
    page.wait_for_function("() => window.filterscope.store.slow !== null")
    page.wait_for_function("""() => window.filterscope.store.slow === null
        || window.filterscope.views.moved.points.size > 0""")
    before = page.evaluate("""() => { const s = window.filterscope.store, m = window.filterscope.views.moved;
        return s.slow === null ? null : [m.points.size, s.head?.seq ?? -1]; }""")
    assert before is not None, "the slow start ended before the moved chart had its history"
    page.wait_for_function("""([, seq]) => { const s = window.filterscope.store;
        return s.slow === null || s.head.seq >= seq + 6; }""", arg=before)
    after = page.evaluate("""() => { const s = window.filterscope.store;
        return s.slow === null ? null : window.filterscope.views.moved.points.size; }""")
    assert after is not None, "the slow start ended before six more live moments came"
    # (at most a few fewer: the socket may drop a frame the page has not taken yet, its queue holding two)
    assert after >= before[0] + 4, f"the moved chart had {before[0]} points, then {after} after 6 live moments"
    # Space, as the Pause button's hint says, pauses training (not only the slow start's replay).
    expect(page.get_by_test_id("pause")).to_be_enabled()  # once the run's status has come
    assert page.evaluate("window.filterscope.store.slow !== null")
    page.locator("body").click(position={"x": 5, "y": 790})
    page.keyboard.press(" ")
    expect(page.get_by_test_id("status")).to_have_text("paused")
    assert page.evaluate("() => { const s = window.filterscope.store; return s.slow === null && s.cursor === null; }")
    page.wait_for_function("() => window.filterscope.store.snapshot === window.filterscope.store.head")
