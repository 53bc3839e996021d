"""The live page is complete: whatever the socket could not send in time (the hub drops a slow page's intermediate
snapshots), the timeline ends up holding every snapshot the server stored and the charts every step, once and in
order: over a live run with a reconnect and a pause, a `classic` run, and an interrupted run resumed while a second
browser watches. No page error on the way (the page fixture fails on any)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ARTIFACTS, _free_port, http_json, own_server

pytestmark = pytest.mark.e2e

SEQS = "() => window.filterscope.store.index.map((r) => r.seq)"


def wait_ended(base: str, run_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (run := http_json("GET", f"{base}/api/runs/{run_id}"))["status"] in ("queued", "running", "paused"):
        assert time.monotonic() < deadline, run
        time.sleep(0.3)
    return dict(run)


def assert_complete(page: Any, base: str, run_id: str) -> None:
    """The page's timeline holds the server's snapshot list, and its charts the server's steps, in order."""
    stored = [r["seq"] for r in http_json("GET", f"{base}/api/runs/{run_id}/snapshots")]
    try:  # the list is asked for again at most once a second past a gap, and once the run has ended
        page.wait_for_function(f"want => JSON.stringify(({SEQS})()) === JSON.stringify(want)", arg=stored,
                               timeout=10_000)
    except Exception:
        shown = page.evaluate(SEQS)
        missing = sorted(set(stored) - set(shown))
        pytest.fail(f"the timeline holds {len(shown)} of {len(stored)} stored snapshots; missing {missing[:20]}")
    steps = http_json("GET", f"{base}/api/runs/{run_id}/steps")["steps"]
    page.wait_for_function("n => window.filterscope.store.steps.x.length === n", arg=len(steps))
    assert page.evaluate("window.filterscope.store.steps.x") == steps
    try:  # the chart redraws at most every 500 ms: wait for its next draw
        page.wait_for_function("n => (window.filterscope.views.ratios.x ?? []).length === n", arg=len(steps),
                               timeout=5_000)
    except Exception:
        pass
    charted = page.evaluate("window.filterscope.views.ratios.x")
    assert charted == steps, "the step-size chart does not hold every step in order"


def test_a_live_run_with_a_reconnect_and_a_pause_reaches_the_timeline_whole(page: Any, ui: Any, server: str) -> None:
    page.goto("/")
    run_id = ui.start_run(page, dataset="mnist", epochs="2", snapshot_every="20")
    page.wait_for_function("window.filterscope.store.steps.x.length > 150", timeout=60_000)
    page.evaluate("window.filterscope.session.socket.ws.close()")  # the connection drops; the page reconnects
    expect(page.get_by_test_id("connection")).to_have_text("live", timeout=15_000)
    page.wait_for_function("window.filterscope.store.steps.x.length > 400", timeout=60_000)
    page.get_by_test_id("pause").click()
    expect(page.get_by_test_id("status")).to_have_text("paused")
    assert_complete(page, server, run_id)  # everything so far, while nothing more comes
    page.get_by_test_id("pause").click()  # Resume
    assert wait_ended(server, run_id)["status"] == "finished"
    assert_complete(page, server, run_id)


def test_a_classic_run_reaches_the_timeline_whole(page: Any, ui: Any, server: str) -> None:
    page.goto("/")
    run_id = ui.start_run(page, dataset="shapes-color", model="classic", epochs="1", train_subset="960",
                          snapshot_every="5")
    assert wait_ended(server, run_id)["status"] == "finished"
    assert_complete(page, server, run_id)


def test_an_interrupted_run_resumed_reaches_both_pages_whole(browser: Any, tmp_path: Path, ui: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    owner_ctx = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=base)
    viewer_ctx = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=base)  # no token: watches
    errors: list[str] = []
    pages = []
    for ctx in (owner_ctx, viewer_ctx):
        p = ctx.new_page()
        p.set_default_timeout(30_000)
        p.on("pageerror", lambda e: errors.append(str(e)))
        pages.append(p)
    owner, viewer = pages
    try:
        with own_server(port, tmp_path, "live-complete-server.log") as proc:
            owner.goto("/")
            run_id = ui.start_run(owner, dataset="mnist", epochs="4", train_subset="3200")
            viewer.goto(f"/?run={run_id}")
            owner.wait_for_function("window.filterscope.store.steps.x.length > 150", timeout=60_000)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        with own_server(port, tmp_path, "live-complete-server.log"):
            for p in pages:  # each page reconnects by itself, past its longest backoff
                expect(p.get_by_test_id("status")).to_have_text("interrupted", timeout=15_000)
            # The run goes back to its last checkpoint: steps and snapshots after it are trained anew.
            owner.get_by_test_id("pause").click()  # Resume
            for p in pages:
                expect(p.get_by_test_id("status")).not_to_have_text("interrupted")
            assert wait_ended(base, run_id)["status"] == "finished"
            for p in pages:
                assert_complete(p, base, run_id)
    finally:
        owner_ctx.close()
        viewer_ctx.close()
    assert not errors, errors
