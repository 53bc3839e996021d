"""Fine-tuning through the real app: a run that starts from another run's snapshot owns that start (step 0
is the source's weights, and it stays whole when the source is deleted), says which layers it took, froze or
re-initialised, resumes after a shutdown, and a start that cannot be is a 422 with a sentence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from filterscope.streaming.codec import decode_frame
from tests.api.conftest import SMALL, OwnerClient, owner_client, start_run, wait_status
from tests.api.test_history import final_model, inspect_probs
from tests.conftest import wait_for


def weights(client: OwnerClient, run_id: str, seq: int) -> dict[str, np.ndarray]:
    """Every conv layer's weights in snapshot `seq`, as the page receives them."""
    header, arrays = decode_frame(client.get(f"/api/runs/{run_id}/snapshots/{seq}").content)
    return {layer["name"]: arrays[f"layers.{i}.weight"] for i, layer in enumerate(header["layers"])}


def snapshots(client: OwnerClient, run_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/runs/{run_id}/snapshots").json())


@pytest.fixture
def source(data_dir: Path) -> tuple[OwnerClient, dict[str, Any]]:
    with owner_client(training_threads=1, checkpoint_seconds=0.2) as client:
        yield client, wait_status(client, start_run(client, **SMALL)["id"], "finished")


def test_a_fine_tuned_run_starts_from_the_snapshot_and_keeps_it_when_the_source_goes(
        source: tuple[OwnerClient, dict[str, Any]]) -> None:
    client, src = source
    last = snapshots(client, src["id"])[-1]["seq"]
    tuned = start_run(client, **{**SMALL, "dataset": "shapes", "seed": 7},
                      init_from={"run": src["id"], "seq": None}, freeze=["conv1"])
    assert tuned["transfer"] == {
        "run": src["id"], "seq": last, "step": src["step"], "model": "tiny", "dataset": "mnist",
        "taken": ["conv1", "conv2", "fc1"], "frozen": ["conv1"],
        "fresh": [{"layer": "out", "reason": f"out.weight is 10×64 in run {src['id']} and 8×64 here"}]}
    done = wait_status(client, tuned["id"], "finished")
    assert done["warnings"] == [] and done["config"]["freeze"] == ["conv1"]
    start = weights(client, tuned["id"], 0)
    for name, w in weights(client, src["id"], last).items():
        assert np.array_equal(start[name], w), name  # step 0 is the source's snapshot
    refs = snapshots(client, tuned["id"])
    for ref in refs:
        assert np.array_equal(weights(client, tuned["id"], ref["seq"])["conv1"], start["conv1"]), ref  # frozen
    assert not np.array_equal(weights(client, tuned["id"], refs[-1]["seq"])["conv2"], start["conv2"])
    # How far each layer moved from the pretrained start, snapshot by snapshot: a frozen layer not at all.
    moved = client.get(f"/api/runs/{tuned['id']}/measures").json()
    assert moved["seq"] == [r["seq"] for r in refs] and moved["step"] == [r["step"] for r in refs]
    assert set(moved["layers"]) == {"conv1", "conv2"}
    assert moved["layers"]["conv1"]["moved"] == [0.0] * len(refs)
    assert moved["layers"]["conv1"]["cosine_to_start"] == [1.0] * len(refs)
    conv2 = moved["layers"]["conv2"]["moved"]
    assert conv2[0] == 0.0 and conv2[-1] > 0.01
    last_frame = decode_frame(client.get(f"/api/runs/{tuned['id']}/snapshots/{refs[-1]['seq']}").content)[0]
    assert conv2[-1] == last_frame["layers"][1]["measures"]["moved"]  # the frame's own figure, as sent

    png = client.get("/api/datasets/shapes/test/3.png").content
    early = {seq: inspect_probs(client, tuned["id"], seq, png) for seq in (0, 3)}  # step 0 and a replay from it
    assert client.delete(f"/api/runs/{src['id']}").status_code == 204
    for seq, probs in early.items():
        assert np.allclose(inspect_probs(client, tuned["id"], seq, png), probs, atol=1e-6), seq
    assert client.get(f"/api/runs/{tuned['id']}").json()["transfer"]["run"] == src["id"]  # where it came from


def test_a_fine_tuned_run_resumes_after_a_shutdown_to_the_weights_it_would_have_had(data_dir: Path) -> None:
    settings: dict[str, Any] = {"training_threads": 1, "checkpoint_seconds": 0.2}  # fixed threads: bit for bit
    with owner_client(**settings) as first:
        src = wait_status(first, start_run(first, **SMALL)["id"], "finished")
        config = {**SMALL, "epochs": 6, "dataset": "fashion-mnist", "init_from": {"run": src["id"]}}
        run = start_run(first, **config)
        wait_for(lambda: first.get(f"/api/runs/{run['id']}").json()["step"] >= 30, timeout=60)
        tokens = dict(first.tokens)
    # Leaving the block shut the app down: the run was interrupted, with a checkpoint where it stood.
    with owner_client(**settings) as second:
        second.tokens.update(tokens)
        assert second.get(f"/api/runs/{run['id']}").json()["status"] == "interrupted"
        whole = wait_status(second, start_run(second, **config)["id"], "finished")  # never interrupted
        assert second.delete(f"/api/runs/{src['id']}").status_code == 204  # the source is gone: no matter
        assert second.post(f"/api/runs/{run['id']}/resume").status_code == 200
        resumed = wait_status(second, run["id"], "finished")
    assert [h["test_accuracy"] for h in resumed["history"]] == [h["test_accuracy"] for h in whole["history"]]
    a, b = final_model(data_dir, run["id"]), final_model(data_dir, whole["id"])
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_a_start_that_cannot_be_is_refused_with_a_sentence(source: tuple[OwnerClient, dict[str, Any]]) -> None:
    client, src = source

    def refused(**config: Any) -> str:
        res = client.post("/api/runs", json={**SMALL, **config})
        assert res.status_code == 422, res.text
        return str(res.json()["detail"])

    assert "does not hold" in refused(init_from={"run": "r00000000"})
    assert "has no snapshot 999" in refused(init_from={"run": src["id"], "seq": 999})
    assert "Nothing of run" in refused(model="lenet5", init_from={"run": src["id"]})
    assert "conv1.weight is 8×1×5×5" in refused(model="lenet5", init_from={"run": src["id"]})
    assert "out cannot be frozen" in refused(dataset="shapes", init_from={"run": src["id"]}, freeze=["out"])
    assert "not a layer of this model" in refused(freeze=["conv7"])
    assert [r["id"] for r in client.get("/api/runs").json()] == [src["id"]]  # nothing was created
