"""A server answers while it starts (app/boot.py): the page's address says so and opens the page by itself once
the server is ready; and the run that comes with filterscope says where it came from."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.e2e.conftest import ConsoleErrors, _free_port, own_server


def test_a_page_opened_while_the_server_starts_says_so_then_opens_by_itself(new_page: Any, console: ConsoleErrors,
                                                                          tmp_path: Path) -> None:
    # while it starts, what the starting page does not serve (the icon) is a 503 with Retry-After, as it should be
    console.allow(r"status of 503 \(Service Unavailable\)")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    # The shipped run seeded into a fresh directory: the page opened on it says it came with filterscope.
    with own_server(port, tmp_path, "start-server.log", env={"FILTERSCOPE_PRETRAINED": "1"}, ready=False):
        with urllib.request.urlopen(f"{base}/healthz") as res:
            said = json.loads(res.read())["status"]
        page = new_page()
        page.goto(f"{base}/")
        if said == "starting":  # the import of PyTorch takes a second or two: caught in it, as a person would be
            expect(page.locator("body")).to_contain_text("is starting")
        expect(page.get_by_test_id("start")).to_be_visible(timeout=30_000)  # the page, once ready
        with urllib.request.urlopen(f"{base}/api/runs") as res:
            (shipped,) = json.loads(res.read())
        assert shipped["shipped"] == "pretrained"
        page.goto(f"{base}/?run={shipped['id']}")
        expect(page.get_by_test_id("viewer-note")).to_contain_text("came with filterscope")
        expect(page.get_by_test_id("viewer-note")).not_to_contain_text("another browser")
        page.goto("about:blank")  # before the server stops: no reconnecting socket behind it
