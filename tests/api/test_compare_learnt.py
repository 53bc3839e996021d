"""The compare view's ✓ is honest: a pair of filters counts as one detector both runs learnt only if each filter
moved from its own run's random start. Runs of one seed start from the same kernels, so two runs that never learnt
match perfectly; that is not learning."""

from __future__ import annotations

import numpy as np

from filterscope.training.matching import MOVED, moved_from
from tests.api.conftest import QUICK, OwnerClient, wait_status


def test_moved_means_turned_away_from_the_start_not_shrunk() -> None:
    rng = np.random.default_rng(0)
    start = rng.normal(size=(4, 1, 5, 5))
    now = start.copy()
    now[0] *= 0.3  # weight decay alone: smaller, same direction
    now[1] = rng.normal(size=(1, 5, 5))  # learnt something else
    now[2] = np.nan  # a dead run's NaN
    now[3] = 0.0  # worn away to nothing
    assert moved_from(now, start) == [False, True, False, False]
    assert MOVED < 1


def test_a_stalled_pair_of_one_seed_is_alike_but_not_learnt(client: OwnerClient) -> None:
    learnt = [client.post("/api/runs", json={**QUICK, "seed": 3}).json() for _ in range(2)]
    stalled = [client.post("/api/runs", json={**QUICK, "seed": 3, "optimizer": "sgd", "lr": 1e-7}).json()
               for _ in range(2)]
    for run in learnt + stalled:
        client.tokens[run["id"]] = run["token"]
    for run in learnt + stalled:
        wait_status(client, run["id"], "finished", timeout=120)

    same = client.get("/api/compare/match", params={"a": learnt[0]["id"], "b": learnt[1]["id"]}).json()
    assert min(same["similarity"]) > 0.99  # one seed, one config: the same filters, bit for bit or nearly
    assert all(same["moved_a"]) and all(same["moved_b"]) and all(same["shared"])

    still = client.get("/api/compare/match", params={"a": stalled[0]["id"], "b": stalled[1]["id"]}).json()
    assert min(still["similarity"]) > 0.99  # alike only because both are still the seed's random start
    assert not any(still["moved_a"]) and not any(still["moved_b"]) and not any(still["shared"])

    mixed = client.get("/api/compare/match", params={"a": learnt[0]["id"], "b": stalled[0]["id"]}).json()
    assert all(mixed["moved_a"]) and not any(mixed["moved_b"]) and not any(mixed["shared"])
