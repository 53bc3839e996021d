"""Request-side heavy work runs on one low-priority thread, so it cannot take the training thread's cores."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from filterscope.background import NICENESS, in_background
from tests.conftest import FILTERSCOPE, alive, wait_for, wait_healthy


def where_and_how_nice() -> tuple[int, int]:
    return threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is a Linux feature")
def test_uploads_run_on_one_thread_at_lowered_priority() -> None:
    async def main() -> list[tuple[int, int]]:
        return list(await asyncio.gather(*(in_background(where_and_how_nice) for _ in range(4))))

    results = asyncio.run(main())
    assert len({tid for tid, _ in results}) == 1  # one worker: two uploads never take both cores
    assert all(nice >= NICENESS for _, nice in results)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < NICENESS  # this thread is untouched


def test_a_server_killed_outright_leaves_no_export_process_behind(tmp_path: Path) -> None:
    """The export processes (spawned, low priority) end with the server even when it is SIGKILLed: they used to
    stay, idle and ~45 MB each, with init as their parent, for good."""

    def children(pid: int) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry.name))
                except (OSError, IndexError, ValueError):
                    pass
        return found

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FILTERSCOPE_DATA_DIR": str(tmp_path)}
    server = subprocess.Popen([*FILTERSCOPE, "serve", "--port", str(port), "--log-level", "warning"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process=server)
        req = urllib.request.Request(f"{base}/api/runs", data=b'{"epochs": 1, "train_subset": 500}', method="POST",
                                     headers={"Content-Type": "application/json"})
        run = json.loads(urllib.request.urlopen(req, timeout=30).read())
        deadline = time.monotonic() + 60
        while True:  # an export: the pool of helper processes starts
            try:
                urllib.request.urlopen(f"{base}/api/runs/{run['id']}/export/weights.npz", timeout=60).read()
                break
            except urllib.error.HTTPError as exc:
                assert exc.code in (404, 429) and time.monotonic() < deadline
                time.sleep(0.2)
        helpers = [p for p in children(server.pid) if "multiprocessing" in Path(f"/proc/{p}/cmdline").read_text()]
        assert helpers
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(30)
    wait_for(lambda: not any(alive(p) for p in helpers), timeout=10)
