"""End-to-end fixtures: the real server in a subprocess, headless Chromium, a page that fails on console errors.

Chromium: $FILTERSCOPE_CHROMIUM, else /usr/bin/chromium, else Playwright's own build (`playwright install
chromium`); without any, the e2e tests are skipped with the reason, except under CI=true, where they fail.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FILTERSCOPE, wait_healthy

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
# Small and fast: `tiny` on `shapes` trains an epoch in about a second on a laptop CPU.
FAST_RUN = {"dataset": "shapes", "model": "tiny", "epochs": "2", "snapshot_every": "5"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def own_server(port: int, data_dir: Path, log_name: str, env: dict[str, str] | None = None,
               ready: bool = True) -> Iterator[subprocess.Popen[bytes]]:
    """A server of a test's own on `data_dir`, which the test may kill (checkpoints twice a second: there is
    one to resume from); its log is test-artifacts/`log_name`. `env`: more of its environment; `ready`: wait
    until it is (else only until it listens, while it still says "starting")."""
    env = {**os.environ, "FILTERSCOPE_DATA_DIR": str(data_dir), "FILTERSCOPE_CHECKPOINT_SECONDS": "0.5", **(env or {})}
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / log_name, "ab") as log:
        proc = subprocess.Popen([*FILTERSCOPE, "serve", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process=proc, ready=ready)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)


def http_json(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    """A tiny HTTP client for set-up and clean-up (urllib: no extra dependency)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


@pytest.fixture(scope="session")
def server_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory the session's server keeps its runs in (another process may train into it too)."""
    return tmp_path_factory.mktemp("e2e-server-runs")


@pytest.fixture(scope="session")
def server(server_data_dir: Path) -> Iterator[str]:
    """The real server, started as `python -m app serve`, on a free port; its log is in test-artifacts/server.log.

    FILTERSCOPE_E2E_URL points the tests at a server that is already running instead.
    """
    ARTIFACTS.mkdir(exist_ok=True)
    if os.environ.get("FILTERSCOPE_E2E_URL"):
        yield os.environ["FILTERSCOPE_E2E_URL"].rstrip("/")
        return
    port = _free_port()
    env = {**os.environ, "FILTERSCOPE_MAX_ACTIVE_RUNS": "4",  # tests overlap runs (two pages, a stop in flight)
           "FILTERSCOPE_DATA_DIR": str(server_data_dir)}
    with open(ARTIFACTS / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [*FILTERSCOPE, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"the server exited with {proc.returncode}; see {ARTIFACTS / 'server.log'}")
                try:
                    if http_json("GET", f"{base}/healthz")["status"] == "ok":
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("the server did not answer /healthz within 90 s")
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _chromium_path() -> str | None:
    path = os.environ.get("FILTERSCOPE_CHROMIUM") or "/usr/bin/chromium"
    return path if Path(path).exists() else shutil.which("chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium for the whole session."""
    with playwright_sync.sync_playwright() as pw:
        path = _chromium_path()
        try:
            b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS) if path else \
                pw.chromium.launch(args=CHROMIUM_ARGS)
        except playwright_sync.Error as exc:
            reason = f"no usable Chromium (set FILTERSCOPE_CHROMIUM or run `playwright install chromium`): {exc}"
            if os.environ.get("CI"):
                pytest.fail(reason)  # CI must run the browser tests, never pass by skipping them
            pytest.skip(reason)
        yield b
        b.close()


class ConsoleErrors:
    """Console 'error' messages and uncaught page errors; a test may allow expected ones by pattern."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture
def console() -> ConsoleErrors:
    return ConsoleErrors()


def _watch(page: Any, console: ConsoleErrors, name: str) -> None:
    page.on("console", lambda m: console.errors.append(f"[{name}] {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: console.errors.append(f"[{name}] uncaught: {e}"))


@pytest.fixture
def new_page(browser: Any, server: str, console: ConsoleErrors, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory of pages at 1280x800 watched for console errors; screenshots of each at the end."""
    contexts: list[Any] = []
    pages: list[Any] = []

    def make(width: int = 1280, height: int = 800) -> Any:
        ctx = browser.new_context(viewport={"width": width, "height": height}, base_url=server)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        _watch(page, console, f"page{len(pages) + 1}")
        pages.append(page)
        return page

    yield make
    ARTIFACTS.mkdir(exist_ok=True)
    for i, page in enumerate(pages):
        suffix = f"-{i + 1}" if len(pages) > 1 else ""
        try:
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}{suffix}.png"), full_page=True)
        except playwright_sync.Error:
            pass
    for page in pages:
        _stop_my_runs(page)
    for ctx in contexts:
        ctx.close()
    assert not console.unexpected(), "console errors:\n" + "\n".join(console.unexpected())


@pytest.fixture
def page(new_page: Any) -> Any:
    """One page at 1280x800."""
    return new_page()


# Leave no run training for the next test (the server limits runs training at once). Only the browser that
# started a run may stop it: each page stops the runs whose tokens its localStorage holds.
STOP_MINE = """async () => {
    const tokens = JSON.parse(localStorage.getItem('filterscope.tokens') || '{}');
    await Promise.all(Object.entries(tokens).map(async ([id, token]) => {
        const run = await (await fetch(`/api/runs/${id}`)).json();
        if (['queued', 'running', 'paused'].includes(run.status)) {
            await fetch(`/api/runs/${id}/stop`, {method: 'POST', headers: {Authorization: `Bearer ${token}`}});
        }
    }));
}"""


def _stop_my_runs(page: Any) -> None:
    try:
        page.evaluate(STOP_MINE)
    except playwright_sync.Error:
        pass  # the page is gone or elsewhere


class Ui:
    """What the tests do on the page, in the page's own terms."""

    def __init__(self, base: str) -> None:
        self.base = base

    @staticmethod
    def fill(page: Any, **fields: str) -> None:
        """Fill the run form: FAST_RUN, with `fields` over it."""
        for name, value in {**FAST_RUN, **fields}.items():
            field = page.get_by_test_id(f"field-{name}")
            if field.evaluate("e => e.tagName") == "SELECT":
                field.select_option(value)
            else:
                field.fill(value)

    def start_run(self, page: Any, **fields: str) -> str:
        """Fill the form (FAST_RUN unless overridden), press Start; the run id from the URL."""
        self.fill(page, **fields)
        page.get_by_test_id("start").click()
        page.wait_for_url(re.compile(r"[?&]run=\w+"))
        return str(page.evaluate("new URL(location.href).searchParams.get('run')"))

    def http_run_status(self, run_id: str) -> int:
        """The HTTP status GET /api/runs/{id} answers with."""
        try:
            urllib.request.urlopen(f"{self.base}/api/runs/{run_id}", timeout=10)
        except urllib.error.HTTPError as exc:
            return exc.code
        return 200

    def http_run(self, run_id: str) -> Any:
        """The run as GET /api/runs/{id} answers it."""
        return http_json("GET", f"{self.base}/api/runs/{run_id}")

    @staticmethod
    def seq(page: Any) -> int:
        """The seq of the snapshot the page holds (-1 before the first)."""
        return int(page.evaluate("window.filterscope.store.snapshot?.seq ?? -1"))

    @staticmethod
    def wait_for_seq_above(page: Any, seq: int, timeout: float = 20_000) -> None:
        page.wait_for_function("s => (window.filterscope.store.snapshot?.seq ?? -1) > s", arg=seq, timeout=timeout)

    @staticmethod
    def canvas_pixels(page: Any, testid: str) -> str:
        """The canvas as a data URL: its exact pixels, to compare two moments."""
        return str(page.get_by_test_id(testid).evaluate("c => c.toDataURL()"))

    @staticmethod
    def lit_fraction(page: Any, testid: str) -> float:
        """Fraction of the canvas's pixels that are neither transparent nor the gap colour."""
        return float(page.get_by_test_id(testid).evaluate("""c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lit = 0;
            for (let i = 0; i < d.length; i += 4) {
                const gap = d[i] === 0x3a && d[i + 1] === 0x3f && d[i + 2] === 0x47;
                if (d[i + 3] && !gap) lit++;
            }
            return lit / (d.length / 4);
        }"""))


@pytest.fixture
def artifacts() -> Path:
    """test-artifacts/ at the repository root (gitignored): screenshots, server log, measured figures."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def ui(server: str) -> Ui:
    return Ui(server)
