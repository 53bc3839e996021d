"""Every moment kept: each snapshot listed and served as sent, one filter across the run, runs that survive a
restart byte for byte, an interrupted run resumed to the weights it would have had, deletion, the disk budget."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from filterscope.record.store import Store
from filterscope.streaming.codec import decode_frame
from filterscope.training import checkpoints
from filterscope.training.recorder import is_snapshot_step
from tests.api.conftest import QUICK, SMALL, OwnerClient, owner_client, start_run, wait_status
from tests.conftest import wait_for


def all_frames(client: OwnerClient, run_id: str) -> dict[int, bytes]:
    refs = client.get(f"/api/runs/{run_id}/snapshots").json()
    frames = {}
    for ref in refs:
        res = client.get(f"/api/runs/{run_id}/snapshots/{ref['seq']}")
        assert res.status_code == 200 and res.headers["content-type"] == "application/octet-stream"
        frames[ref["seq"]] = res.content
    return frames


def test_every_snapshot_is_listed_and_served_as_it_was_sent(client: OwnerClient) -> None:
    run = start_run(client)
    with client.websocket_connect(f"/ws/runs/{run['id']}") as ws:
        sent: dict[int, bytes] = {}
        while True:
            message = ws.receive()
            if message.get("bytes") is not None:
                sent[decode_frame(message["bytes"])[0]["seq"]] = message["bytes"]
            elif '"status":"finished"' in (message.get("text") or ""):
                break
    refs = client.get(f"/api/runs/{run['id']}/snapshots").json()
    steps = [r["step"] for r in refs]
    # step 0, then dense at the start, then every `snapshot_every`, and the epoch's end (63 steps at batch 128)
    assert steps == [0, *[s for s in range(1, 63) if is_snapshot_step(s, QUICK["snapshot_every"])], 63]
    assert [r["seq"] for r in refs] == list(range(len(refs))) and refs[-1]["epoch_end"]
    stored = all_frames(client, run["id"])
    assert sent and all(stored[seq] == frame for seq, frame in sent.items())  # byte for byte
    res = client.get(f"/api/runs/{run['id']}/snapshots/3")
    assert "immutable" in res.headers["cache-control"]
    again = client.get(f"/api/runs/{run['id']}/snapshots/3", headers={"If-None-Match": res.headers["etag"]})
    assert again.status_code == 304 and not again.content


def test_one_filter_across_the_whole_run_in_one_answer(finished_run: tuple[OwnerClient, dict[str, Any]]) -> None:
    client, run = finished_run
    res = client.get(f"/api/runs/{run['id']}/filters/conv2/5")
    assert res.status_code == 200 and res.headers["content-type"] == "application/octet-stream"
    header, arrays = decode_frame(res.content)
    frames = [decode_frame(f) for f in all_frames(client, run["id"]).values()]
    assert header["type"] == "trajectory" and header["shape"] == [8, 5, 5]
    assert [s["seq"] for s in header["snapshots"]] == [h["seq"] for h, _ in frames]
    for kind in ("weight", "grad", "update"):
        assert arrays[kind].shape == (len(frames), 8, 5, 5)
        for i, (_, frame_arrays) in enumerate(frames):
            assert np.allclose(arrays[kind][i], frame_arrays[f"layers.1.{kind}"][5], atol=1e-7)
    assert np.abs(arrays["weight"][-1] - arrays["weight"][0]).max() > 0  # it moved
    for path, words in [("conv9/0", "no conv layer 'conv9'"), ("conv1/8", "has 8 filters (0-7)")]:
        res = client.get(f"/api/runs/{run['id']}/filters/{path}")
        assert res.status_code == 404 and words in res.json()["detail"]
    assert client.get(f"/api/runs/{run['id']}/filters/conv1/-1").status_code == 422


def test_new_routes_answer_unknowns_and_wrong_states_with_a_sentence(
        finished_run: tuple[OwnerClient, dict[str, Any]]) -> None:
    client, run = finished_run
    for path in ("/snapshots/0", "/filters/conv1/0", "/export/weights.npz", "/export/filters.gif"):
        res = client.get(f"/api/runs/nope{path}")
        assert res.status_code == 404 and "GET /api/runs" in res.json()["detail"]
    res = client.get(f"/api/runs/{run['id']}/snapshots/999")
    assert res.status_code == 404 and "no snapshot 999" in res.json()["detail"]
    assert client.get(f"/api/runs/{run['id']}/snapshots/-1").status_code == 422
    res = client.get(f"/api/runs/{run['id']}/export/filters.gif?layer=fc1")
    assert res.status_code == 404 and "no conv layer 'fc1'" in res.json()["detail"]
    res = client.post(f"/api/runs/{run['id']}/resume")
    assert res.status_code == 409 and "finished" in res.json()["detail"]
    assert client.delete("/api/runs/nope").status_code == 404
    stranger = OwnerClient(client.app)
    assert stranger.delete(f"/api/runs/{run['id']}").status_code == 401
    assert client.get(f"/api/runs/{run['id']}").status_code == 200


def test_a_restart_keeps_every_run_byte_for_byte(data_dir: Path) -> None:
    with owner_client() as first:
        done = wait_status(first, start_run(first)["id"], "finished")
        stopped = start_run(first, epochs=20)
        wait_for(lambda: first.get(f"/api/runs/{stopped['id']}").json()["snapshots"] > 12)
        first.post(f"/api/runs/{stopped['id']}/stop")
        stopped = wait_status(first, stopped["id"], "stopped")
        before = {rid: (first.get(f"/api/runs/{rid}").json(), all_frames(first, rid))
                  for rid in (done["id"], stopped["id"])}
        with first.websocket_connect(f"/ws/runs/{done['id']}") as ws:
            steps_before = [ws.receive_json(), ws.receive_json()][1]
    with owner_client() as second:  # a new app on the same data directory
        assert [r["id"] for r in second.get("/api/runs").json()] == [stopped["id"], done["id"]]
        for rid, (run, frames) in before.items():
            again = second.get(f"/api/runs/{rid}").json()
            assert {k: v for k, v in again.items() if k != "bytes"} == {k: v for k, v in run.items() if k != "bytes"}
            assert all_frames(second, rid) == frames
        with second.websocket_connect(f"/ws/runs/{done['id']}") as ws:
            hello, steps = ws.receive_json(), ws.receive_json()
            first_frame, last_frame = ws.receive_bytes(), ws.receive_bytes()
        assert hello["run"]["status"] == "finished" and steps == steps_before
        frames = before[done["id"]][1]
        assert first_frame == frames[0] and last_frame == frames[max(frames)]


def final_model(data_dir: Path, run_id: str) -> dict[str, torch.Tensor]:
    store = Store(data_dir / "runs.db")
    try:
        point = store.checkpoint(run_id)
        assert point is not None and not point.resumable  # the finished model
        return dict(checkpoints.load(point.data)["loop"]["model"])
    finally:
        store.close()


def test_an_interrupted_run_resumes_to_exactly_the_weights_it_would_have_had(data_dir: Path) -> None:
    settings: dict[str, Any] = {"training_threads": 2, "checkpoint_seconds": 0.2}  # fixed threads: bit for bit
    config = {**QUICK, "epochs": 2, "seed": 3, "augment": True, "dropout": 0.2}
    with owner_client(**settings) as first:
        run = start_run(first, **config)
        wait_for(lambda: first.get(f"/api/runs/{run['id']}").json()["step"] >= 40, timeout=60)
        token = first.tokens[run["id"]]
    # Leaving the block shut the app down: the run was interrupted, with a checkpoint where it stood.
    with owner_client(**settings) as second:
        second.tokens[run["id"]] = token
        interrupted = second.get(f"/api/runs/{run['id']}").json()
        assert interrupted["status"] == "interrupted" and interrupted["step"] >= 40
        res = second.post(f"/api/runs/{run['id']}/pause")
        assert res.status_code == 409 and "resume it" in res.json()["detail"]
        assert second.post(f"/api/runs/{run['id']}/resume").json()["status"] in ("queued", "running")
        resumed = wait_status(second, run["id"], "finished")
        whole = wait_status(second, start_run(second, **config)["id"], "finished")  # never interrupted
    assert [h["test_accuracy"] for h in resumed["history"]] == [h["test_accuracy"] for h in whole["history"]]
    a, b = final_model(data_dir, run["id"]), final_model(data_dir, whole["id"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with owner_client(**settings) as third:
        refs = third.get(f"/api/runs/{run['id']}/snapshots").json()
        assert [r["seq"] for r in refs] == sorted({r["seq"] for r in refs})  # no number used twice
        assert refs[-1]["step"] == whole["step"] and refs[-1]["epoch_end"]


def inspect_probs(client: OwnerClient, run_id: str, seq: int, png: bytes) -> np.ndarray:
    res = client.post(f"/api/runs/{run_id}/inspect?snapshot={seq}", files={"file": ("probe.png", png, "image/png")})
    assert res.status_code == 200, res.text
    return np.array(res.json()["prediction"]["probabilities"])


def test_inspecting_an_old_snapshot_after_a_restart_replays_the_model_it_had(data_dir: Path) -> None:
    with owner_client(training_threads=2, checkpoint_seconds=0.3) as first:
        # Fashion-MNIST: a 28x28 test image uploaded back is the same input (a digit is re-centred and scaled
        # as MNIST's were, which moves an early model's probabilities by ~1e-3)
        run = wait_status(first, start_run(first, epochs=2, dataset="fashion-mnist")["id"], "finished")
        png = first.get("/api/datasets/fashion-mnist/test/7.png").content
        refs = first.get(f"/api/runs/{run['id']}/snapshots").json()
        recent = [r["seq"] for r in refs[-7:-1]]  # still in memory: the models as they were, exactly
        live = {seq: inspect_probs(first, run["id"], seq, png) for seq in recent}
    with owner_client() as second:  # replayed from the checkpoint before each (on one thread, not two)
        for seq, probs in live.items():
            assert np.allclose(inspect_probs(second, run["id"], seq, png), probs, atol=1e-5), seq
        early = refs[4]["seq"]
        frame, _ = decode_frame(second.get(f"/api/runs/{run['id']}/snapshots/{early}").content)
        probe = second.get("/api/datasets/fashion-mnist/test/0.png").content  # the run's probe then
        # the frame's probabilities travel at 6 digits
        assert np.allclose(inspect_probs(second, run["id"], early, probe), frame["probe"]["probs"], atol=1e-5)


def test_deleting_a_run_removes_it_whole_and_tells_its_watchers(client: OwnerClient) -> None:
    run = start_run(client, epochs=20)
    with client.websocket_connect(f"/ws/runs/{run['id']}") as ws:
        assert ws.receive_json()["type"] == "hello"
        assert client.delete(f"/api/runs/{run['id']}").status_code == 204
        for _ in range(10_000):  # the backlog and live frames, then the close
            message = ws.receive()
            if message["type"] == "websocket.close":
                break
    assert message["code"] == 4410 and "deleted" in message["reason"]
    assert client.get(f"/api/runs/{run['id']}").status_code == 404
    assert client.get(f"/api/runs/{run['id']}/snapshots/0").status_code == 404
    assert client.get("/api/runs").json() == []


@pytest.mark.parametrize("watched", [True, False])
def test_past_the_disk_budget_an_older_ended_run_goes_whole_unless_someone_watches_it(watched: bool) -> None:
    # 1 MB admits a SMALL run (~0.8 MB projected), and two of them on disk are past it (tests/api/test_budget.py
    # has the budget's arithmetic; this is about who is spared)
    with owner_client(max_disk=2**20) as client:
        old = start_run(client, **SMALL)
        with client.websocket_connect(f"/ws/runs/{old['id']}") as ws:
            ws.receive_json()
            wait_status(client, old["id"], "finished")
            if not watched:
                ws.close()
            newer = wait_status(client, start_run(client, **SMALL)["id"], "finished")
            client.app.state.runs.enforce_budget()  # what the server does every few seconds, now
            assert client.get(f"/api/runs/{newer['id']}").status_code == 200  # never the newest
            assert client.get(f"/api/runs/{old['id']}").status_code == (200 if watched else 404)
            assert client.get(f"/api/runs/{old['id']}/snapshots/0").status_code == (200 if watched else 404)


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(data_dir: Path) -> None:
    settings: dict[str, Any] = {"training_threads": 2}
    with owner_client(**settings) as first:
        run = start_run(first, seed=5)
        wait_for(lambda: first.get(f"/api/runs/{run['id']}").json()["step"] >= 3, timeout=60)
        token = first.tokens[run["id"]]
    with sqlite3.connect(data_dir / "runs.db") as conn:  # as if killed before any checkpoint was written
        conn.execute("DELETE FROM checkpoints")
    with owner_client(**settings) as second:
        second.tokens[run["id"]] = token
        assert second.post(f"/api/runs/{run['id']}/resume").status_code == 200
        resumed = wait_status(second, run["id"], "finished")
        whole = wait_status(second, start_run(second, seed=5)["id"], "finished")
        refs = second.get(f"/api/runs/{run['id']}/snapshots").json()
    assert refs[0]["step"] == 0 and [r["step"] for r in refs].count(0) == 1  # step 0 kept, not taken twice
    assert [h["test_accuracy"] for h in resumed["history"]] == [h["test_accuracy"] for h in whole["history"]]
    a, b = final_model(data_dir, run["id"]), final_model(data_dir, whole["id"])
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("number", "words"), [(str(2**31), "less than or equal to 2147483647"),
                                               (str(2**63), "less than or equal to 2147483647"),
                                               (str(10**30), "less than or equal to 2147483647"),
                                               ("9" * 5000, "integer, exceeded maximum size")])
def test_a_number_past_any_snapshot_or_filter_is_a_422_naming_the_bound(
        finished_run: tuple[OwnerClient, dict[str, Any]], number: str, words: str) -> None:
    client, run = finished_run
    for path, name in [(f"snapshots/{number}", "seq"), (f"snapshots/{number}/top/conv1", "seq"),
                       (f"filters/conv1/{number}", "index")]:
        res = client.get(f"/api/runs/{run['id']}/{path}")
        assert res.status_code == 422, (path, res.text)
        (error,) = res.json()["detail"]  # the shape every 422 has (app/api/errors.py), the input cut short
        assert error["loc"] == ["path", name] and words in error["msg"] and len(res.content) < 1000
    res = client.get(f"/api/runs/{run['id']}/snapshots/{2**31 - 1}")  # in bounds: simply not there
    assert res.status_code == 404 and f"no snapshot {2**31 - 1}" in res.json()["detail"]


def test_the_bounds_on_snapshot_and_filter_numbers_are_in_the_openapi_schema(client: OwnerClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, name in [("/api/runs/{run_id}/snapshots/{seq}", "seq"),
                       ("/api/runs/{run_id}/snapshots/{seq}/top/{layer}", "seq"),
                       ("/api/runs/{run_id}/filters/{layer}/{index}", "index")]:
        (param,) = [p for p in paths[path]["get"]["parameters"] if p["name"] == name]
        assert param["schema"]["minimum"] == 0 and param["schema"]["maximum"] == 2**31 - 1
