"""`filterscope.watch` on models unlike the presets, trained by scripts of their own (tests/watching/nets.py) in
their own processes, and read back through the real app on the same data directory."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import filterscope
from filterscope.streaming.codec import decode_frame
from tests.api.conftest import OwnerClient, owner_client
from tests.conftest import wait_for
from tests.watching.nets import NETS, Vggish, batches

ROOT = Path(__file__).resolve().parents[2]
STEPS = 12


def script(arch: str, data_dir: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.watching.nets", arch, str(STEPS), str(data_dir), str(out),
                             *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "error::RuntimeWarning"})


def only_run(client: OwnerClient) -> dict[str, Any]:
    (run,) = client.get("/api/runs").json()
    return run


def frame(client: OwnerClient, run_id: str, seq: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    res = client.get(f"/api/runs/{run_id}/snapshots/{seq}")
    assert res.status_code == 200
    return decode_frame(res.content)


@pytest.mark.parametrize("arch", sorted(NETS))
def test_a_watched_script_is_a_run_with_every_conv_layer_its_last_weights_maps_and_top_patches(
        arch: str, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "final.pt"
    proc = script(arch, data_dir, out)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    model_class, shape, _ = NETS[arch]
    model = model_class()
    model.load_state_dict(torch.load(out))
    convs = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    with owner_client() as client:
        run = only_run(client)
        assert f"run {run['id']}" in stdout
        assert run["kind"] == "watch" and run["status"] == "finished" and run["step"] == STEPS
        assert run["config"]["source"] == "watch" and run["config"]["input"] == list(shape)
        assert run["capabilities"] == {"controllable": False, "resumable": False, "replayable": False,
                                       "inspectable": False}
        assert {layer["name"] for layer in run["layers"]} == set(convs)  # every conv, wherever it sits
        for layer in run["layers"]:
            w = convs[layer["name"]].weight
            assert [layer["out_channels"], layer["in_channels"], *layer["kernel"]] == list(w.shape)
        # Step 0, the dense start (after each of the first 10 steps), then the epoch's end, also the last moment.
        steps = [s["step"] for s in client.get(f"/api/runs/{run['id']}/snapshots").json()]
        assert steps == [*range(11), STEPS]
        header, arrays = frame(client, run["id"], len(steps) - 1)
        x = batches(arch, STEPS)[0][0][:1]  # the probe: the first batch's first image
        seen: dict[str, torch.Tensor] = {}
        hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: seen.setdefault(n, o)) for n, m in convs.items()]
        model.eval()
        with torch.no_grad():
            model(x)
        for h in hooks:
            h.remove()
        for i, layer in enumerate(header["layers"]):
            name = layer["name"]
            w = convs[name].weight.detach().numpy()
            np.testing.assert_allclose(arrays[f"layers.{i}.weight"], w, atol=np.abs(w).max() / 30000)
            preact = seen[name][0].numpy()
            assert arrays[f"layers.{i}.preact"].shape == preact.shape
            np.testing.assert_allclose(arrays[f"layers.{i}.preact"], preact, atol=np.abs(preact).max() / 100)
            grad = arrays[f"layers.{i}.grad"]
            assert np.abs(grad).max() > 0  # dL/dW of the step, though the script set .grad to None after it
        top = client.get(f"/api/runs/{run['id']}/snapshots/{run['analyses'][-1]}/top/{header['layers'][-1]['name']}")
        assert top.status_code == 200
        body = top.json()
        patch = next(p for f in body["filters"] for p in f["patches"])
        images = client.get(f"/api/runs/{run['id']}/images.u8")
        assert images.status_code == 200 and images.headers["X-Shape"] == f"16,{shape[0]},{shape[1]},{shape[2]}"
        y0, x0, y1, x1 = patch["box"]
        assert 0 <= y0 < y1 <= shape[1] and 0 <= x0 < x1 <= shape[2]
        res = client.post(f"/api/runs/{run['id']}/inspect", files={"file": ("x.png", b"\x89PNG", "image/png")})
        assert res.status_code == 409 and "own model" in res.json()["detail"]


def test_a_watched_run_ends_with_the_weights_of_the_same_run_unwatched(data_dir: Path, tmp_path: Path) -> None:
    watched, unwatched = tmp_path / "watched.pt", tmp_path / "unwatched.pt"
    for out, extra in ((watched, ()), (unwatched, ("--unwatched",))):
        proc = script("resnet", data_dir, out, *extra)
        _, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
    a, b = torch.load(watched), torch.load(unwatched)
    assert a.keys() == b.keys()
    for key in a:  # parameters, BatchNorm's running statistics and its counter: bit for bit
        assert torch.equal(a[key], b[key]), key


def test_a_script_killed_mid_run_leaves_an_interrupted_run_with_what_it_recorded(data_dir: Path,
                                                                                  tmp_path: Path) -> None:
    proc = script("vggish", data_dir, tmp_path / "never.pt", "--hang-after", "7")
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("hanging"):
                break
        with owner_client() as client:
            wait_for(lambda: only_run(client)["snapshots"] >= 8, 30)
            assert only_run(client)["status"] == "running"
            proc.kill()
            proc.wait(30)
            wait_for(lambda: only_run(client)["status"] == "interrupted", 30)
            run = only_run(client)
            assert run["snapshots"] == 8 and run["step"] == 7  # steps 0-7: everything it had recorded
            assert run["capabilities"]["resumable"] is False  # the model and its data are the script's
            assert frame(client, run["id"], 7)[0]["step"] == 7
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def test_an_unwritable_data_directory_warns_once_and_training_goes_on(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    torch.manual_seed(0)
    model = Vggish()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    (x, y), = batches("vggish", 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        watcher = filterscope.watch(model, optimizer=opt, data_dir=blocked / "runs", say=False)
        for _ in range(3):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            watcher.step(loss)
        watcher.close()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "training goes on" in messages[0]
    assert watcher.run_id is None or watcher.snapshots <= 1


def test_a_model_without_conv_layers_or_with_bad_arguments_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="torch.nn.Module"):
        filterscope.watch("not a model")  # type: ignore[arg-type]
    with pytest.warns(RuntimeWarning, match="no nn.Conv2d"):
        watcher = filterscope.watch(torch.nn.Linear(3, 2), data_dir=tmp_path, say=False)
    watcher.step(1.0)  # never raises into the loop
    watcher.close()


def run_in_process(model: torch.nn.Module, data_dir: Path, optimizer: bool, steps: int = 4) -> Any:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    (x, y), = batches("vggish", 1)
    watcher = filterscope.watch(model, optimizer=opt if optimizer else None, data_dir=data_dir, say=False)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        watcher.step(loss)  # without optimizer=, dL/dW is read here: .grad still holds it
    watcher.close()
    return watcher


def test_without_an_optimizer_the_gradient_is_read_at_each_step(data_dir: Path) -> None:
    torch.manual_seed(0)
    watcher = run_in_process(Vggish(), data_dir, optimizer=False)
    assert watcher._off is None and watcher.snapshots == 5  # step 0 (the first forward's image) and steps 1-4
    with owner_client() as client:
        run = only_run(client)
        assert run["config"]["optimizer"] is None and run["config"]["lr"] is None
        _, arrays = frame(client, run["id"], 4)
        assert np.abs(arrays["layers.0.grad"]).max() > 0


def test_a_compiled_model_still_trains_and_is_recorded_from_its_own_module(data_dir: Path) -> None:
    torch.manual_seed(0)
    model = Vggish()
    compiled = torch.compile(model, backend="eager")  # no compiler needed; the wrapper is the same
    watcher = run_in_process(compiled, data_dir, optimizer=True)  # type: ignore[arg-type]
    assert watcher._off is None and watcher.module is model
    with owner_client() as client:
        run = only_run(client)
        assert run["config"]["compiled"] is True and run["step"] == 4
        _, arrays = frame(client, run["id"], run["snapshots"] - 1)
        np.testing.assert_allclose(arrays["layers.0.weight"], model.conv1.weight.detach().numpy(), atol=1e-4)


def test_a_watched_runs_images_count_in_the_disk_budget_and_go_with_the_run(data_dir: Path) -> None:
    from filterscope.record.images import images_bytes, images_path
    torch.manual_seed(0)
    model = Vggish()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    (x, y), = batches("vggish", 1)
    with filterscope.watch(model, optimizer=opt, images=x, data_dir=data_dir, say=False) as watcher:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        watcher.step(loss)
    assert watcher.run_id is not None and watcher.token is not None
    path = images_path(data_dir, watcher.run_id)
    assert path.exists() and images_bytes(data_dir) == path.stat().st_size > 16 * 28 * 28
    with owner_client() as client:
        res = client.delete(f"/api/runs/{watcher.run_id}", headers={"Authorization": f"Bearer {watcher.token}"})
        assert res.status_code in (200, 204)
    assert not path.exists() and images_bytes(data_dir) == 0
