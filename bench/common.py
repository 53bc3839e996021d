"""What the benches share: a real server in its own process, and percentiles."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent
FILTERSCOPE = [sys.executable, "-m", "filterscope"]  # the `filterscope` command, in this interpreter


def serve(env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server in its own process, as a person runs it; the bench process is the client.

    `env`: extra environment variables for the server (e.g. FILTERSCOPE_TRAINING_THREADS). Unless it names a
    FILTERSCOPE_DATA_DIR, the server keeps its runs in a fresh temporary directory, never the person's own.
    """
    env = {"FILTERSCOPE_DATA_DIR": tempfile.mkdtemp(prefix="filterscope-bench-"), **(env or {})}
    port = free_port()
    proc = subprocess.Popen([*FILTERSCOPE, "serve", "--port", str(port), "--log-level", "warning", *args],
                            cwd=ROOT, stdout=subprocess.DEVNULL, env={**os.environ, **env})
    base = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # a server starting a Ray instance takes a few seconds more
    while True:
        try:
            res = httpx.get(f"http://{base}/healthz", timeout=1)
            if res.status_code == 200 and res.json()["status"] == "ok":  # not "starting" (app/boot.py)
                return proc, base
            time.sleep(0.05)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the server did not start") from None
            time.sleep(0.1)


def trained(config: str = "{}") -> Path:
    """A runs.db in a fresh directory holding one run of `config` (JSON), trained by `filterscope train` on one
    thread (the same numbers every time), without the shipped run."""
    data_dir = Path(tempfile.mkdtemp(prefix="filterscope-bench-"))
    subprocess.run([*FILTERSCOPE, "train", "--data-dir", str(data_dir), "--config", config], cwd=ROOT, check=True,
                   env={**os.environ, "FILTERSCOPE_PRETRAINED": "0", "FILTERSCOPE_TRAINING_THREADS": "1"})
    return data_dir / "runs.db"


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (a server's export helpers; Chromium's renderer, GPU and utility
    processes), from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += [c for c, parent in parents.items() if parent == p]
    return found


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
