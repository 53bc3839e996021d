"""Runs on a Ray cluster, against real servers (`filterscope serve --ray`) and real local Ray instances, all on
loopback: a run trained by an actor ends bit for bit where the same run in a thread does, a worker killed
mid-run leaves it interrupted and Resume finishes it to the same weights, two runs of a sweep train at once
on the two nodes of a two-node cluster, and a killed server leaves nothing training. Kept few: each Ray start
takes seconds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.api.conftest import owner_client, start_run, wait_status
from tests.api.test_history import final_model
from tests.conftest import FILTERSCOPE, alive, wait_healthy

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CONFIG = {"epochs": 2, "train_subset": 1500, "batch_size": 32, "snapshot_every": 10, "seed": 4}
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray on one machine: bound to 127.0.0.1, not the LAN


def call(base: str, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"null")


def wait(base: str, run_id: str, done: Any, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = call(base, "GET", f"/api/runs/{run_id}")
        if done(run):
            return dict(run)
        assert time.monotonic() < deadline, run
        time.sleep(0.1)


@contextmanager
def ray_server(data_dir: Path, ray: str, log_name: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`filterscope serve --ray RAY` on `data_dir`, one training thread a run, checkpoints every 0.2 s."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **LOOPBACK, "FILTERSCOPE_DATA_DIR": str(data_dir), "FILTERSCOPE_TRAINING_THREADS": "1",
           "FILTERSCOPE_CHECKPOINT_SECONDS": "0.2"}
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / log_name, "ab") as log:
        proc = subprocess.Popen([*FILTERSCOPE, "serve", "--port", str(port), "--ray", ray], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, timeout=120, process=proc)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)


def test_a_run_on_an_actor_is_the_threads_run_and_survives_its_worker_being_killed(tmp_path: Path) -> None:
    with owner_client(training_threads=1, data_dir=tmp_path / "threads") as client:  # the same run, in a thread
        reference = wait_status(client, start_run(client, **CONFIG)["id"], "finished")
    expected = final_model(tmp_path / "threads", reference["id"])

    with ray_server(tmp_path / "ray", "local", "ray-local.log") as (server, base):
        made = call(base, "POST", "/api/runs", CONFIG)
        run = wait(base, made["id"], lambda r: r["step"] >= 40 and r["worker"] is not None)
        assert run["kind"] == "ray" and run["worker"]["ip"] == "127.0.0.1"
        worker = run["worker"]["pid"]
        os.kill(worker, signal.SIGKILL)  # the worker process dies mid-run
        killed_at = time.monotonic()
        run = wait(base, made["id"], lambda r: r["status"] == "interrupted", timeout=30)
        assert time.monotonic() - killed_at < 10
        assert "The worker training this run" in run["message"] and str(worker) in run["message"]
        call(base, "POST", f"/api/runs/{made['id']}/resume", token=made["token"])
        run = wait(base, made["id"], lambda r: r["status"] == "finished")
        assert [h["test_accuracy"] for h in run["history"]] == [h["test_accuracy"] for h in reference["history"]]

        # A killed server leaves nothing training: its actors end with it, and the local instance too.
        again = call(base, "POST", "/api/runs", {**CONFIG, "epochs": 20})
        trainer = wait(base, again["id"], lambda r: r["worker"] is not None)["worker"]["pid"]
        assert alive(trainer)
        server.kill()
        server.wait(30)
        deadline = time.monotonic() + 30
        while alive(trainer):
            assert time.monotonic() < deadline, "the run's worker outlived the server"
            time.sleep(0.2)
    got = final_model(tmp_path / "ray", made["id"])
    assert all(np.array_equal(got[k].numpy(), expected[k].numpy()) for k in expected)  # bit for bit


def test_a_sweep_trains_on_both_nodes_of_a_two_node_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in LOOPBACK.items():
        monkeypatch.setenv(key, value)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                            "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        with ray_server(tmp_path, cluster.address, "ray-cluster.log") as (_server, base):
            sweep = call(base, "POST", "/api/sweeps", {"base": {**CONFIG, "epochs": 4}, "vary": {"seed": [1, 2]}})
            ids = [r["id"] for r in sweep["runs"]]
            both = [wait(base, i, lambda r: r["status"] == "running" and r["worker"] is not None) for i in ids]
            assert len({r["worker"]["node"] for r in both}) == 2  # one run on each node, at once
            assert all(r["queue_position"] is None for r in both)
            for i in ids:
                wait(base, i, lambda r: r["status"] == "finished", timeout=120)
    finally:
        cluster.shutdown()
