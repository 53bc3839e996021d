"""The run filterscope ships: a fresh data directory lists a `tiny` pretrained on Fashion-MNIST like any run,
once (a restart adds no second copy, and one that was removed stays removed), a run fine-tunes from it at
once, and its record is what scripts/pretrain.py trains: the same weights from the same seed."""

from __future__ import annotations

import importlib.util
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from filterscope.paths import PRETRAINED
from filterscope.record.bundle import read_bundle
from filterscope.record.store import Store
from filterscope.streaming.codec import decode_frame
from filterscope.training.datasets import get_info
from filterscope.training.loop import TrainLoop
from tests.api.conftest import owner_client, start_run, wait_status
from tests.api.test_transfer import weights

SHIPPED = read_bundle(PRETRAINED).run_id


def pretrain_script() -> ModuleType:
    """scripts/pretrain.py, the script that makes the shipped run, as a module."""
    spec = importlib.util.spec_from_file_location("pretrain", Path(__file__).parents[2] / "scripts" / "pretrain.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_fresh_data_directory_lists_the_pretrained_run_and_a_run_fine_tunes_from_it(data_dir: Path) -> None:
    with owner_client(pretrained=True, training_threads=1) as client:
        runs = client.get("/api/runs").json()
        assert [r["id"] for r in runs] == [SHIPPED]
        run = client.get(f"/api/runs/{SHIPPED}").json()
        assert run["status"] == "finished" and run["config"]["model"] == "tiny"
        assert run["shipped"] == "pretrained"  # the page says it came with filterscope, not "another browser"
        assert run["config"]["dataset"] == "fashion-mnist" and run["history"][-1]["test_accuracy"] > 0.85
        refs = client.get(f"/api/runs/{SHIPPED}/snapshots").json()
        assert refs[0]["step"] == 0 and refs[-1]["step"] == run["step"] and len(refs) > 40
        header, _ = decode_frame(client.get(f"/api/runs/{SHIPPED}/snapshots/{refs[-1]['seq']}").content)
        assert [layer["name"] for layer in header["layers"]] == ["conv1", "conv2"]

        tuned = start_run(client, dataset="mnist", epochs=1, train_subset=300, init_from={"run": SHIPPED})
        assert tuned["transfer"]["taken"] == ["conv1", "conv2", "fc1", "out"] and tuned["transfer"]["fresh"] == []
        assert tuned["shipped"] is None
        wait_status(client, tuned["id"], "finished")
        start, end = weights(client, tuned["id"], 0), weights(client, SHIPPED, refs[-1]["seq"])
        assert all(np.array_equal(start[k], end[k]) for k in end)

    with owner_client(pretrained=True) as again:  # a restart: the same run, once
        assert sorted(r["id"] for r in again.get("/api/runs").json()) == sorted([SHIPPED, tuned["id"]])
    store = Store(data_dir / "runs.db")
    store.delete_run(SHIPPED)
    store.flush()
    store.close()
    with owner_client(pretrained=True) as after:  # removed is removed: it does not come back
        assert [r["id"] for r in after.get("/api/runs").json()] == [tuned["id"]]


def test_without_it_a_data_directory_starts_empty(data_dir: Path) -> None:
    with owner_client(pretrained=False) as client:
        assert client.get("/api/runs").json() == []


def test_the_shipped_run_is_what_the_script_trains(tmp_path: Path) -> None:
    """The script's config and seed give the shipped weights: the first 100 steps, retrained here on one thread,
    end where the shipped snapshot at step 100 is, to the frame's int16 quantisation."""
    pretrain = pretrain_script()
    _, rows = read_bundle(PRETRAINED).rows["snapshots"]
    at_100 = next(r for r in rows if r[2] == 100)  # (run_id, seq, step, epoch, epoch_end, etag, size, frame)
    header, arrays = decode_frame(zlib.decompress(at_100[7]))
    torch.set_num_threads(1)
    loop = TrainLoop(pretrain.CONFIG, get_info(pretrain.CONFIG.dataset), torch.device("cpu"))
    for _ in range(100):
        loop.train_batch()
    state = loop.model_state()
    for i, layer in enumerate(header["layers"]):
        shipped = arrays[f"layers.{i}.weight"]
        step = np.abs(shipped).max() / 32767  # the frame's quantisation step (streaming/codec.py)
        np.testing.assert_allclose(state[f"{layer['name']}.weight"].numpy(), shipped, rtol=0, atol=1.01 * step)
