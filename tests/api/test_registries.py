"""Data sets and models over HTTP are what the registries hold at the time of the request."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from filterscope.training.datasets.registry import names as dataset_names
from tests.api.conftest import owner_client, wait_status
from tests.training.test_registry import registered_dataset


@pytest.mark.parametrize(("field", "listing"), [("dataset", "/api/datasets"), ("model", "/api/models")])
def test_an_unknown_name_is_422_naming_the_registered_ones(client: TestClient, field: str, listing: str) -> None:
    res = client.post("/api/runs", json={field: "cifar"})
    assert res.status_code == 422
    (error,) = res.json()["detail"]
    assert error["loc"] == ["body", field] and error["type"] == "unregistered" and error["input"] == "cifar"
    registered = [item["name"] for item in client.get(listing).json()]
    assert error["msg"].startswith("Input should be a registered ")
    assert error["msg"].endswith(", ".join(repr(n) for n in registered[:-1]) + f" or {registered[-1]!r}")


def test_a_data_set_registered_at_run_time_is_listed_and_trains(tmp_path: Path) -> None:
    # Its own data directory: a stored run on a data set that is gone again is no other test's business.
    with registered_dataset("halves"), owner_client(data_dir=tmp_path, max_active_runs=1) as client:
        assert client.get("/api/datasets").json()[-1]["name"] == "halves"
        assert client.get("/api/datasets/halves/test/1.png").headers["x-label"] == "1"
        res = client.post("/api/runs", json={"dataset": "halves", "batch_size": 10, "epochs": 1})
        assert res.status_code == 201, res.text
        done = wait_status(client, res.json()["id"], "finished", "failed")
        assert done["status"] == "finished" and done["step"] == 2 and done["classes"] == ["left", "right"]
    assert "halves" not in dataset_names()  # the registry is left as it was found
