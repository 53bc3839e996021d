"""Kill the server while a page watches a run train, start it again: the page comes back to the run, says it
was interrupted, and Resume goes on from the last checkpoint to the end, every loss point once."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ARTIFACTS, _free_port, http_json, own_server

pytestmark = pytest.mark.e2e


def test_a_killed_server_comes_back_and_the_page_resumes_the_run(browser: Any, tmp_path: Path, ui: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=base)
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        with own_server(port, tmp_path, "restart-server.log") as proc:
            page.goto("/")
            # 6 epochs of 50 steps: killed a third of the way in, resumed to the end
            run_id = ui.start_run(page, epochs="6", dataset="mnist", train_subset="1600")
            page.wait_for_function("window.filterscope.store.steps.x.length > 100")
            proc.send_signal(signal.SIGKILL)  # no goodbye: a crash, or a pulled plug of the process
            proc.wait(10)
            expect(page.get_by_test_id("connection")).not_to_have_text("live")
            # While the server is gone the page does not claim the run trains, nor offers controls that can't reach it
            expect(page.get_by_test_id("status")).to_have_text("server unreachable")
            for name in ("pause", "step", "stop"):
                expect(page.get_by_test_id(name)).to_be_disabled()
        with own_server(port, tmp_path, "restart-server.log"):
            # The page reconnects by itself and learns what became of the run: at its next retry, which backs off
            # to 10 s (+20 %) while the server is gone (socket.js), so a slow restart may take that long.
            expect(page.get_by_test_id("status")).to_have_text("interrupted", timeout=15_000)
            stored = http_json("GET", f"{base}/api/runs/{run_id}")
            assert stored["status"] == "interrupted" and stored["snapshots"] > 10
            resume = page.get_by_test_id("pause")
            expect(resume).to_have_text("Resume")
            resume.click()
            expect(page.get_by_test_id("status")).to_have_text("finished", timeout=120_000)
            xs = page.evaluate("window.filterscope.store.steps.x")
            assert xs == list(range(1, stored["total_steps"] + 1))  # every step once, none lost, none twice
            page.screenshot(path=str(ARTIFACTS / "restart-resumed.png"), full_page=True)
    finally:
        ctx.close()
    assert not errors, errors
