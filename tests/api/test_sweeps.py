"""Sweeps and comparing runs through the real app: one run per value, queued in order; every bad sweep a
sentence; a run's steps for its curves; two runs' filters matched."""

from __future__ import annotations

import numpy as np
import pytest

from filterscope.streaming.codec import decode_frame
from filterscope.training.matching import match_filters
from tests.api.conftest import QUICK, SMALL, OwnerClient, owner_client, wait_status


def test_a_learning_rate_sweep_makes_one_run_per_value_queued_in_order() -> None:
    with owner_client(max_active_runs=1) as client:
        base = {**QUICK, "train_subset": 512}  # 4 steps each: the queue is what is tested, not learning
        res = client.post("/api/sweeps", json={"base": base, "vary": {"lr": [0.0005, 0.005, 0.05]}})
        assert res.status_code == 201
        sweep = res.json()
        assert sweep["field"] == "lr" and sweep["values"] == [0.0005, 0.005, 0.05]
        runs = sweep["runs"]
        assert [r["config"]["lr"] for r in runs] == [0.0005, 0.005, 0.05]
        assert all(r["token"] for r in runs) and all(r["config"]["epochs"] == 1 for r in runs)
        assert [r["queue_position"] for r in runs] == [None, 1, 2]  # the cap is 1: the others wait their turn
        for run in runs:
            client.tokens[run["id"]] = run["token"]
        for run in runs:
            wait_status(client, run["id"], "finished", timeout=120)
        got = client.get(f"/api/sweeps/{sweep['id']}").json()
        assert [r["id"] for r in got["runs"]] == [r["id"] for r in runs]
        assert all(r["status"] == "finished" for r in got["runs"])
    with owner_client() as again:  # kept across a restart
        assert again.get(f"/api/sweeps/{sweep['id']}").json()["values"] == [0.0005, 0.005, 0.05]


@pytest.mark.parametrize(("vary", "says"), [
    ({}, "exactly one config field"),
    ({"lr": [0.1], "dropout": [0.5]}, "exactly one config field"),
    ({"colour": [1, 2]}, "is not a run config field"),
    ({"lr": [0.1]}, "2 to 8 values"),
    ({"lr": [0.001 * i for i in range(1, 10)]}, "2 to 8 values"),
    ({"lr": [0.1, -1]}, "vary.lr[1] = -1"),
    ({"train_subset": [100, 50_000]}, "larger than the mnist training set"),
])
def test_a_bad_sweep_gets_one_sentence_and_starts_nothing(client: OwnerClient, vary: dict, says: str) -> None:
    before = len(client.get("/api/runs").json())
    res = client.post("/api/sweeps", json={"base": QUICK, "vary": vary})
    assert res.status_code == 422 and says in res.json()["detail"], res.json()
    assert len(client.get("/api/runs").json()) == before


def test_an_unknown_sweep_is_404(client: OwnerClient) -> None:
    res = client.get("/api/sweeps/snope")
    assert res.status_code == 404 and "no sweep" in res.json()["detail"]


def test_a_runs_steps_and_two_runs_filters_matched(client: OwnerClient) -> None:
    # a whole epoch each (63 steps): trained filters of two seeds match better than their random starts
    a = client.post("/api/runs", json={**QUICK, "seed": 1}).json()
    b = client.post("/api/runs", json={**QUICK, "seed": 2}).json()
    client.tokens.update({a["id"]: a["token"], b["id"]: b["token"]})
    for run in (a, b):
        wait_status(client, run["id"], "finished")
    steps = client.get(f"/api/runs/{a['id']}/steps").json()
    assert steps["steps"] == list(range(1, 64)) and len(steps["losses"]) == 63
    assert set(steps["ratios"]) == {"conv1", "conv2"} and len(steps["ratios"]["conv2"]) == 63

    res = client.get("/api/compare/match", params={"a": a["id"], "b": b["id"], "layer": "conv2"})
    assert res.status_code == 200
    m = res.json()
    assert sorted(m["permutation"]) == list(range(32)) and len(m["similarity"]) == 32
    last = [client.get(f"/api/runs/{r['id']}/snapshots").json()[-1]["seq"] for r in (a, b)]
    assert (m["a"]["seq"], m["b"]["seq"]) == tuple(last)
    weights = [decode_frame(client.get(f"/api/runs/{r['id']}/snapshots/{s}").content)[1]["layers.1.weight"]
               for r, s in zip((a, b), last, strict=True)]
    assert m["permutation"] == match_filters(*weights).permutation
    # at step 0 each run is its own seed's random start: they match no better than chance
    start = client.get("/api/compare/match", params={"a": a["id"], "b": b["id"], "seq_a": 0, "seq_b": 0}).json()
    assert start["a"]["step"] == 0 and np.mean(start["similarity"]) < np.mean(
        client.get("/api/compare/match", params={"a": a["id"], "b": b["id"]}).json()["similarity"])

    for params, says in [({"a": a["id"], "b": "rnope"}, "no run rnope"),
                         ({"a": a["id"], "b": b["id"], "layer": "conv9"}, "its conv layers: conv1, conv2"),
                         ({"a": a["id"], "b": b["id"], "seq_a": 9999}, "no snapshot 9999")]:
        res = client.get("/api/compare/match", params=params)
        assert res.status_code == 404 and says in res.json()["detail"]
    other = client.post("/api/runs", json={**SMALL, "model": "lenet5"}).json()  # any run of another model
    client.tokens[other["id"]] = other["token"]
    wait_status(client, other["id"], "finished")
    res = client.get("/api/compare/match", params={"a": a["id"], "b": other["id"]})
    assert res.status_code == 422 and "compare runs of one model" in res.json()["detail"]
