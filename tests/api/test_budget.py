"""The disk budget means bytes on disk: runs that would not fit are refused up front with what fits, the
oldest ended runs go when it is passed (never the newest), and deleted runs give their space back."""

from __future__ import annotations

from pathlib import Path

from filterscope.runs.disk import wal_bound
from tests.api.conftest import QUICK, owner_client, start_run, wait_status
from tests.conftest import wait_for

MB = 2**20


def test_a_run_that_would_not_fit_the_budget_is_refused_with_what_would(data_dir: Path) -> None:
    with owner_client(max_disk=200 * MB) as client:
        res = client.post("/api/runs", json={"model": "classic", "epochs": 60, "batch_size": 1, "snapshot_every": 1})
        assert res.status_code == 422
        detail = res.json()["detail"]
        assert "would store about" in detail and "the disk budget is 200 MB" in detail
        every = int(detail.split("raise snapshot_every to at least ")[1].split(",")[0])
        fits = client.post("/api/runs", json={"model": "classic", "epochs": 60, "batch_size": 1,
                                              "snapshot_every": every})
        assert fits.status_code == 201  # what the sentence says fits, fits
        client.tokens[fits.json()["id"]] = fits.json()["token"]
        client.post(f"/api/runs/{fits.json()['id']}/stop")
        assert client.get("/api/runs").json()[0]["id"] == fits.json()["id"]  # the refused one was never made


def test_past_the_budget_the_oldest_ended_runs_go_never_the_newest_and_the_file_shrinks(data_dir: Path) -> None:
    budget = 6 * MB  # two runs, and the WAL at its bound (runs/disk.py wal_bound: 2.4 MB of it)
    with owner_client(max_disk=budget, max_active_runs=1) as client:
        ids = []
        for _ in range(4):  # each about 1.5 MB on disk
            run = start_run(client, **QUICK)
            wait_status(client, run["id"], "finished", timeout=120)
            ids.append(run["id"])
        store = client.app.state.runs.store
        # The scheduler keeps it within a few seconds: the database with its WAL counted at its bound.
        wait_for(lambda: store.db_bytes() + wal_bound(budget) <= budget, 20)
        listed = [r["id"] for r in client.get("/api/runs").json()]
        assert listed[0] == ids[-1] and ids[0] not in listed  # the newest stays, the oldest went
        before = store.disk_bytes()
        for run_id in listed:
            assert client.delete(f"/api/runs/{run_id}").status_code == 204
        wait_for(lambda: store.disk_bytes() < before / 4, 20)  # the deleted runs' pages went back to the disk
