"""Limits that answer before work is done: a config that cannot run is refused whatever the queue holds; exports
of ended runs are made once and kept, and a few at a time (429 with Retry-After past that)."""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from filterscope.background import exports as export_processes
from filterscope.runs.queue import MAX_QUEUED
from tests.api.conftest import QUICK, SMALL, LocalClient, owner_client, start_run, wait_status
from tests.conftest import wait_for


def test_a_full_queue_still_says_what_is_wrong_with_a_config_first() -> None:
    with owner_client(max_active_runs=1) as client:
        runs = [start_run(client, epochs=20) for _ in range(1 + MAX_QUEUED)]  # one training, the queue full
        assert runs[-1]["status"] == "queued" and runs[-1]["queue_position"] == MAX_QUEUED
        res = client.post("/api/runs", json={"epochs": 1, "probe_index": 10**6})
        assert res.status_code == 422 and "probe_index 1000000 is out of range" in res.json()["detail"]
        res = client.post("/api/runs", json={"epochs": 1})  # a config that can run waits its turn: no room
        assert res.status_code == 429 and "waiting for a training slot" in res.json()["detail"]
        for run in reversed(runs):
            client.post(f"/api/runs/{run['id']}/stop")


# ---- exports: kept once made, made a few at a time ----------------------------------------------------------------


def kept_exports(data_dir: Path, run_id: str) -> dict[str, int]:
    """The run's kept exports: file name -> inode (a file made again is a new inode)."""
    folder = data_dir / "exports" / run_id
    return {p.name: p.stat().st_ino for p in folder.iterdir()} if folder.is_dir() else {}


def test_an_ended_runs_exports_are_made_once_kept_and_revalidated(data_dir: Path) -> None:
    with owner_client() as client:
        run = wait_status(client, start_run(client, **SMALL)["id"], "finished")
        urls = [f"/api/runs/{run['id']}/export/weights.npz", f"/api/runs/{run['id']}/export/filters.gif?layer=conv2",
                f"/api/runs/{run['id']}/filters/conv2/3"]
        first = [client.get(url) for url in urls]
        assert [r.status_code for r in first] == [200] * 3
        kept = kept_exports(data_dir, run["id"])
        last = run["snapshots"] - 1  # keyed by the last snapshot's seq (seqs count from 0 here)
        assert set(kept) == {f"{last}-weights.npz", f"{last}-filters-conv2.gif", f"{last}-filter-conv2-3"}
        again = [client.get(url) for url in urls]
        assert [r.content for r in again] == [r.content for r in first]
        assert kept_exports(data_dir, run["id"]) == kept  # sent from the kept files, not made again
        for url, res in zip(urls, first, strict=True):
            assert client.get(url, headers={"If-None-Match": res.headers["etag"]}).status_code == 304
        npz = np.load(io.BytesIO(first[0].content))
        assert npz["conv2.weight"].shape == (run["snapshots"], 32, 8, 5, 5) and npz["conv2.weight"].dtype == np.float32
        assert list(npz["seq"]) == list(range(run["snapshots"]))
        assert Image.open(io.BytesIO(first[1].content)).n_frames > 1
        assert first[0].headers["content-disposition"] == f'attachment; filename="{run["id"]}-weights.npz"'


def test_a_live_runs_exports_are_made_each_time_and_not_kept(data_dir: Path) -> None:
    with owner_client() as client:
        run = start_run(client, epochs=20)
        wait_for(lambda: client.get(f"/api/runs/{run['id']}").json()["snapshots"] >= 3)
        client.post(f"/api/runs/{run['id']}/pause")
        res = client.get(f"/api/runs/{run['id']}/export/weights.npz")
        assert res.status_code == 200 and "etag" not in res.headers
        assert np.load(io.BytesIO(res.content))["conv1.weight"].shape[0] >= 3
        assert kept_exports(data_dir, run["id"]) == {}
        assert list((data_dir / "exports" / ".scratch").iterdir()) == []  # made, sent and gone
        client.post(f"/api/runs/{run['id']}/stop")


def test_a_resumed_run_gets_new_exports_and_a_deleted_one_loses_its_own(data_dir: Path) -> None:
    settings: dict[str, Any] = {"training_threads": 2, "checkpoint_seconds": 0.2}
    with owner_client(**settings) as first:
        run = start_run(first, **{**QUICK, "epochs": 2})
        wait_for(lambda: first.get(f"/api/runs/{run['id']}").json()["step"] >= 40, timeout=60)
        token = first.tokens[run["id"]]
    with owner_client(**settings) as second:  # the run came back interrupted: ended, its exports kept
        second.tokens[run["id"]] = token
        before = second.get(f"/api/runs/{run['id']}/export/weights.npz")
        assert before.status_code == 200 and len(kept_exports(data_dir, run["id"])) == 1
        assert second.post(f"/api/runs/{run['id']}/resume").status_code == 200
        done = wait_status(second, run["id"], "finished")
        after = second.get(f"/api/runs/{run['id']}/export/weights.npz")
        assert np.load(io.BytesIO(after.content))["step"][-1] == done["step"] > \
            np.load(io.BytesIO(before.content))["step"][-1]
        last = second.get(f"/api/runs/{run['id']}/snapshots").json()[-1]["seq"]
        assert list(kept_exports(data_dir, run["id"])) == [f"{last}-weights.npz"]  # the interrupted one's is gone
        assert after.headers["etag"] != before.headers["etag"]
        other = wait_status(second, start_run(second, **SMALL)["id"], "finished")
        assert second.delete(f"/api/runs/{run['id']}").status_code == 204
        assert second.get(f"/api/runs/{other['id']}/export/weights.npz").status_code == 200
        assert not (data_dir / "exports" / run["id"]).exists()  # swept when the next export was made


def wait_for_file(path: Path) -> bool:
    """Run in an export process: hold it until `path` exists."""
    while not path.exists():
        time.sleep(0.01)
    return True


def test_past_the_export_processes_or_one_build_per_client_the_answer_is_429_with_retry_after(data_dir: Path) -> None:
    with owner_client() as owner:
        run = wait_status(owner, start_run(owner, **SMALL)["id"], "finished")
        assert owner.get(f"/api/runs/{run['id']}/filters/conv1/7").status_code == 200  # the app's exports exist
        builds = owner.app.state.exports.builds
        url = f"/api/runs/{run['id']}"
        gate = data_dir / "open"  # both export processes held: every build waits, holding its slot
        held = [export_processes.submit(wait_for_file, gate) for _ in range(export_processes.workers)]
        people = {name: LocalClient(owner.app, client=(f"10.0.0.{i}", 5000)) for i, name in enumerate("abcd", 1)}
        with ThreadPoolExecutor(3) as pool:
            try:
                a = pool.submit(people["a"].get, f"{url}/filters/conv1/0")
                wait_for(lambda: builds.running == 1)
                res = people["a"].get(f"{url}/filters/conv1/1")  # a second build for the same client
                assert res.status_code == 429 and res.headers["retry-after"] == "2"
                assert "still being made" in res.json()["detail"]
                b = pool.submit(people["b"].get, f"{url}/export/filters.gif")
                wait_for(lambda: builds.running == 2)
                res = people["c"].get(f"{url}/export/weights.npz")  # a third, from anyone
                assert res.status_code == 429 and res.headers["retry-after"] == "2"
                assert "2 exports are being made for others" in res.json()["detail"]
                d = pool.submit(people["d"].get, f"{url}/filters/conv1/0")  # the export a's build is making
                time.sleep(0.3)
                assert builds.running == 2 and not (a.done() or b.done() or d.done())  # d waits, without a slot
            finally:
                gate.touch()
            assert [f.result(timeout=60).status_code for f in (a, b, d)] == [200, 200, 200]
        assert d.result().content == a.result().content
        assert all(f.result(timeout=10) for f in held) and builds.running == 0
        assert people["c"].get(f"{url}/export/weights.npz").status_code == 200  # its turn now


def test_an_export_whose_process_is_killed_is_a_503_and_the_next_one_is_made(data_dir: Path) -> None:
    with owner_client() as client:
        run = wait_status(client, start_run(client, **SMALL)["id"], "finished")
        gate = data_dir / "open"
        held = [export_processes.submit(wait_for_file, gate) for _ in range(export_processes.workers)]
        with ThreadPoolExecutor(1) as pool:
            asked = pool.submit(client.get, f"/api/runs/{run['id']}/export/weights.npz")
            wait_for(lambda: len(multiprocessing.active_children()) >= export_processes.workers)
            time.sleep(0.5)  # the workers are up and hold the gate; the export waits behind them
            os.kill(multiprocessing.active_children()[0].pid or 0, signal.SIGKILL)  # as the OOM killer would
            res = asked.result(timeout=60)
        assert res.status_code == 503 and "ask again" in res.json()["detail"]
        assert all(f.exception(timeout=30) is not None for f in held)
        gate.touch()
        assert client.get(f"/api/runs/{run['id']}/export/weights.npz").status_code == 200
