"""A real server killed with SIGKILL while it trains comes back with every run and every snapshot it served,
the run `interrupted`, and resuming it ends with exactly the weights of a run that was never killed: with a
fixed thread count, and with the default one (chosen once, recorded with the run, used again on resume)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from filterscope.record.store import Store
from filterscope.training import checkpoints
from filterscope.training.config import TrainConfig
from filterscope.training.engine import CheckpointEvent, Engine
from filterscope.training.threads import default_threads
from tests.api.conftest import free_port
from tests.conftest import FILTERSCOPE, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"epochs": 3, "batch_size": 128, "snapshot_every": 5, "seed": 4, "augment": True}


@contextmanager
def server(data_dir: Path, threads: str | None = "2",
           checkpoint_seconds: str = "0.3") -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A server on `data_dir`; `threads`: FILTERSCOPE_TRAINING_THREADS (None: unset, the default)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "FILTERSCOPE_TRAINING_THREADS"}
    env.update({"FILTERSCOPE_DATA_DIR": str(data_dir), "FILTERSCOPE_CHECKPOINT_SECONDS": checkpoint_seconds})
    if threads is not None:
        env["FILTERSCOPE_TRAINING_THREADS"] = threads
    proc = subprocess.Popen([*FILTERSCOPE, "serve", "--port", str(port), "--log-level", "warning"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process=proc)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def call(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers, method=method),
                                timeout=60) as res:
        raw = res.read()
        return json.loads(raw) if res.headers["content-type"] == "application/json" else raw


def test_a_killed_server_comes_back_and_the_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    with server(tmp_path) as (base, proc):
        created = call("POST", f"{base}/api/runs", CONFIG)
        rid, token = created["id"], created["token"]
        deadline = time.monotonic() + 120
        while call("GET", f"{base}/api/runs/{rid}")["step"] < 120:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        served = {ref["seq"]: call("GET", f"{base}/api/runs/{rid}/snapshots/{ref['seq']}")
                  for ref in call("GET", f"{base}/api/runs/{rid}/snapshots")}
        proc.send_signal(signal.SIGKILL)  # mid-training, no goodbye
        proc.wait(10)
    with server(tmp_path) as (base, _):
        run = call("GET", f"{base}/api/runs/{rid}")
        assert run["status"] == "interrupted" and "resume" in run["message"]
        for seq, frame in served.items():
            assert call("GET", f"{base}/api/runs/{rid}/snapshots/{seq}") == frame  # byte for byte
        assert call("POST", f"{base}/api/runs/{rid}/resume", token=token)["status"] in ("queued", "running")
        deadline = time.monotonic() + 120
        while (run := call("GET", f"{base}/api/runs/{rid}"))["status"] != "finished":
            assert run["status"] in ("queued", "running") and time.monotonic() < deadline, run
            time.sleep(0.1)
    store = Store(tmp_path / "runs.db")
    point = store.checkpoint(rid)
    store.close()
    assert point is not None and point.step == run["total_steps"]

    reference, _ = final_model(CONFIG, threads=2)  # the same run, never interrupted
    resumed = checkpoints.load(point.data)["loop"]["model"]
    assert resumed.keys() == reference.keys() and all(torch.equal(resumed[k], reference[k]) for k in reference)


def final_model(config: dict[str, Any], threads: int | str = 0) -> tuple[dict[str, torch.Tensor], Engine]:
    """The final weights of `config` trained in this process, never interrupted, and its engine."""
    model: dict[str, torch.Tensor] = {}

    def keep(event: object) -> None:
        if isinstance(event, CheckpointEvent) and not event.resumable:
            model.update(event.state["loop"]["model"])

    engine = Engine(TrainConfig(**config), emit=keep, threads=threads)
    engine.start()
    assert engine.join(120)
    return model, engine


# 100 steps an epoch, 2 epochs: a few seconds on one thread; checkpoints every 0.05 s of training, so that even
# a fast machine has one to resume from by the time the run is killed.
SMALL = {"epochs": 2, "batch_size": 64, "train_subset": 6400, "snapshot_every": 5, "seed": 4, "augment": True}


def test_with_the_default_threads_a_killed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    with server(tmp_path, threads=None, checkpoint_seconds="0.05") as (base, proc):
        created = call("POST", f"{base}/api/runs", SMALL)
        rid, token = created["id"], created["token"]
        deadline = time.monotonic() + 120
        while call("GET", f"{base}/api/runs/{rid}")["step"] < 60:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    store = Store(tmp_path / "runs.db")
    point = store.checkpoint(rid, resumable=True)
    (stored,) = store.load_runs()
    store.close()
    assert point is not None and 0 < point.step < 200  # it goes on from a checkpoint, not from step 0
    assert stored.meta["threads"] == default_threads()  # recorded with the run, as the checkpoint has it
    assert checkpoints.load(point.data)["threads"] == default_threads()
    with server(tmp_path, threads=None) as (base, _):
        assert call("POST", f"{base}/api/runs/{rid}/resume", token=token)["status"] in ("queued", "running")
        deadline = time.monotonic() + 120
        while (run := call("GET", f"{base}/api/runs/{rid}"))["status"] != "finished":
            assert run["status"] in ("queued", "running") and time.monotonic() < deadline, run
            time.sleep(0.05)
    store = Store(tmp_path / "runs.db")
    point = store.checkpoint(rid)
    store.close()
    assert point is not None and point.step == run["total_steps"] == 200
    reference, engine = final_model(SMALL)  # the same run under the same (default) settings, never killed
    assert engine.threads == default_threads()
    resumed = checkpoints.load(point.data)["loop"]["model"]
    assert resumed.keys() == reference.keys() and all(torch.equal(resumed[k], reference[k]) for k in reference)
