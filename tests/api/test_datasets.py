"""A person's own pictures as a data set, through the real app: import, list, train, restart, delete, and every
hostile archive refused with nothing written outside the data directory."""

from __future__ import annotations

import io
import stat
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from filterscope.cli import main as cli_main
from filterscope.training.datasets import get_dataset, uploaded
from filterscope.training.datasets.registry import names as dataset_names
from filterscope.training.models import names as model_names
from tests.api.conftest import OwnerClient, owner_client, start_run, wait_status

COLOURS = {"circles": (220, 40, 40), "squares": (40, 60, 220), "stripes": (30, 160, 60)}


def picture(cls: str, i: int, fmt: str = "PNG") -> bytes:
    """A coloured shape of class `cls` on grey, at a size and place that depend on `i`."""
    rng = np.random.default_rng(i)
    w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))
    im = Image.new("RGB", (w, h), (128, 128, 128))
    draw = ImageDraw.Draw(im)
    x, y = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
    box = (x, y, x + w // 2, y + h // 2)
    if cls == "circles":
        draw.ellipse(box, fill=COLOURS[cls])
    elif cls == "squares":
        draw.rectangle(box, fill=COLOURS[cls])
    else:
        for k in range(0, w, 8):
            draw.line((k, 0, k, h), fill=COLOURS.get(cls, (0, 0, 0)), width=3)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def archive(files: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return buf.getvalue()


def good_files(classes: tuple[str, ...] = ("circles", "squares"), per_class: int = 10, top: str = "pets/"
               ) -> dict[str, bytes]:
    files = {f"{top}{c}/{i}.{'jpg' if i % 2 else 'png'}": picture(c, i, "JPEG" if i % 2 else "PNG")
             for c in classes for i in range(per_class)}
    files[f"{top}README.txt"] = b"my pets"
    files[f"{top}circles/broken.png"] = b"\x89PNG not really"
    files[f"{top}.DS_Store"] = b"\0"
    return files


def post(client: OwnerClient, data: bytes, name: str = "pets", **fields: Any) -> Any:
    return client.post("/api/datasets", files={"file": ("pets.zip", data, "application/zip")},
                       data={"name": name, **{k: str(v) for k, v in fields.items()}})


def outside(data_dir: Path) -> set[Path]:
    """Every file under the data directory's parent that is not inside the data directory."""
    return {p for p in data_dir.parent.rglob("*") if data_dir not in p.parents and p != data_dir}


def test_a_zip_becomes_a_data_set_listed_as_uploaded(data_dir: Path) -> None:
    with owner_client(data_dir=data_dir) as client:
        res = post(client, archive(good_files()))
        assert res.status_code == 201, res.text
        body = res.json()
        assert body["classes"] == ["circles", "squares"]
        assert body["train_per_class"] == {"circles": 8, "squares": 8}
        assert body["test_per_class"] == {"circles": 2, "squares": 2}
        assert body["skipped"] == {"not an image file": 1, "unreadable image": 1, "hidden file": 1}
        assert body["channels"] == 3 and body["size"] == 32  # colour pictures: the CIFAR default
        listed = {d["name"]: d for d in client.get("/api/datasets").json()}
        assert listed["pets"]["source"] == "uploaded" and listed["mnist"]["source"] == "shipped"
        assert listed["pets"]["train_count"] == 16 and listed["pets"]["test_count"] == 4
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/datasets/pets/test/0.png").status_code == 200
        # The page shows each class with its first test pictures, and names every test picture's class.
        labels = client.get("/api/datasets/pets/labels").json()
        assert labels["classes"] == ["circles", "squares"] and sorted(labels["test"]) == [0, 0, 1, 1]
        for k, c in enumerate(labels["classes"]):
            assert body["examples"][c] == [i for i, y in enumerate(labels["test"]) if y == k]
            assert client.get(f"/api/datasets/pets/test/{body['examples'][c][0]}.png").headers["x-label"] == str(k)
        assert client.get("/api/datasets/nope/labels").status_code == 404
        assert '"pets"' in client.get("/").text  # the run form's Data set menu offers it on the next page load
    data = get_dataset("pets") if "pets" in dataset_names() else None
    assert data is None  # the app's shutdown forgot it: the registry is per process, the folder stays
    assert (data_dir / "datasets" / "pets" / "data.npz").exists()


def test_options_size_and_grey(data_dir: Path) -> None:
    with owner_client(data_dir=data_dir) as client:
        res = post(client, archive(good_files()), size=20, channels=1)
        assert res.status_code == 201, res.text
        data = get_dataset("pets")
        assert data.x_train.shape == (16, 1, 20, 20) and data.x_test.dtype == np.uint8
        assert data.info.mean[0] == pytest.approx(data.x_train.mean() / 255, abs=1e-3)
        assert post(client, archive(good_files()), name="other", size=500).status_code == 422
        assert post(client, archive(good_files()), name="other", channels=2).status_code == 422


def test_a_folder_imports_by_command_and_a_restart_keeps_it(data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "leaves"
    for name, data in good_files(("oak", "ivy", "fern"), per_class=6, top="").items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    with pytest.raises(SystemExit) as done:
        cli_main(["dataset", "add", str(folder), "--name", "leaves", "--size", "24", "--data-dir", str(data_dir)])
    assert done.value.code == 0
    uploaded.forget("leaves")  # as if the command's process ended
    with owner_client(data_dir=data_dir) as client:  # a server started afterwards finds it
        listed = {d["name"]: d for d in client.get("/api/datasets").json()}
        assert listed["leaves"]["classes"] == ["fern", "ivy", "oak"] and listed["leaves"]["size"] == 24
        assert listed["leaves"]["test_count"] == 3  # round(6 * 0.2) = 1 per class


@pytest.mark.parametrize("model", model_names())
def test_every_preset_trains_on_it(data_dir: Path, model: str) -> None:
    with owner_client(data_dir=data_dir) as client:
        assert post(client, archive(good_files()), size=32).status_code == 201
        run = start_run(client, dataset="pets", model=model, batch_size=4, epochs=1, snapshot_every=2)
        done = wait_status(client, run["id"], "finished", "failed")
        assert done["status"] == "finished", done.get("message")
        assert done["step"] == 4  # 16 training images, 4 a batch
        assert done["history"][-1]["test_accuracy"] is not None


def test_delete_waits_for_live_runs_and_old_runs_still_load(data_dir: Path) -> None:
    with owner_client(data_dir=data_dir) as client:
        assert post(client, archive(good_files())).status_code == 201
        run = start_run(client, dataset="pets", batch_size=1, epochs=100, snapshot_every=50)
        wait_status(client, run["id"], "running")
        busy = client.delete("/api/datasets/pets")
        assert busy.status_code == 409 and run["id"] in busy.json()["detail"]
        assert client.post(f"/api/runs/{run['id']}/stop").status_code == 200
        wait_status(client, run["id"], "stopped")
        assert client.delete("/api/datasets/pets").status_code == 204
        assert "pets" not in [d["name"] for d in client.get("/api/datasets").json()]
        assert client.delete("/api/datasets/pets").status_code == 404
        assert client.delete("/api/datasets/mnist").status_code == 409
        assert not (data_dir / "datasets" / "pets").exists()
    tokens = dict(client.tokens)
    with owner_client(data_dir=data_dir) as client:  # the run that used it still loads, and says so on resume
        client.tokens.update(tokens)  # the same person, after a restart
        res = client.get(f"/api/runs/{run['id']}")
        assert res.status_code == 200 and res.json()["config"]["dataset"] == "pets"
        assert client.get(f"/api/runs/{run['id']}/snapshots").status_code == 200
        assert res.json()["capabilities"]["inspectable"] is False
        inspect = client.post(f"/api/runs/{run['id']}/inspect", files={"file": ("x.png", b"\x89PNG", "image/png")})
        assert inspect.status_code == 409 and "deleted since" in inspect.json()["detail"]
        assert post(client, archive(good_files())).status_code == 201  # the name is free again


HOSTILE: dict[str, tuple[Any, int, str]] = {
    "zip slip": (lambda: archive({**good_files(), "../evil.png": picture("circles", 1)}), 422, "leaves its folder"),
    "absolute path": (lambda: archive({**good_files(), "/tmp/evil.png": picture("circles", 1)}), 422,
                      "leaves its folder"),
    "symlink": (lambda: archive(good_files(), links=("pets/circles/link.png",)), 422, "symbolic link"),
    "nested archive": (lambda: archive({**good_files(), "pets/circles/more.zip": archive(good_files())}), 422,
                       "another archive"),
    "not a zip": (lambda: picture("circles", 1), 415, "not a zip"),
    "empty zip": (lambda: archive({}), 422, "No pictures"),
    "one class": (lambda: archive(good_files(("circles",))), 422, "one class"),
    "too few in a class": (lambda: archive({**good_files(), **{f"pets/stripes/{i}.png": picture("stripes", i)
                                                               for i in range(3)}}), 422, "'stripes' (3)"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_archives_are_refused_with_nothing_written(data_dir: Path, case: str) -> None:
    make, status, words = HOSTILE[case]
    before = outside(data_dir)
    with owner_client(data_dir=data_dir) as client:
        res = post(client, make())
        assert res.status_code == status, res.text
        assert words in res.json()["detail"]
        assert client.get("/healthz").status_code == 200
        assert "pets" not in dataset_names()
    assert outside(data_dir) == before
    assert not (data_dir / "datasets").exists() or not any((data_dir / "datasets").iterdir())


def test_bounds_on_bytes_images_and_classes(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with owner_client(data_dir=data_dir, max_dataset_upload_bytes=1_000) as client:
        big = archive(good_files(per_class=80))
        assert len(big) > 1_000 + 64 * 1024  # past the cap and the multipart envelope allowed around it
        res = post(client, big)
        assert res.status_code == 413 and "larger than" in res.json()["detail"]
    with owner_client(data_dir=data_dir) as client:
        monkeypatch.setattr(uploaded, "MAX_TOTAL_BYTES", 2_000)  # a zip bomb, on a small scale
        res = post(client, archive(good_files()))
        assert res.status_code == 413 and "uncompressed" in res.json()["detail"]
        monkeypatch.setattr(uploaded, "MAX_TOTAL_BYTES", 200 * 2**20)
        monkeypatch.setattr(uploaded, "MAX_IMAGES", 15)
        assert post(client, archive(good_files())).status_code == 413
        monkeypatch.setattr(uploaded, "MAX_IMAGES", 20_000)
        monkeypatch.setattr(uploaded, "MAX_CLASSES", 2)
        res = post(client, archive(good_files(("circles", "squares", "stripes"))))
        assert res.status_code == 422 and "at most 2" in res.json()["detail"]
        assert "pets" not in dataset_names()


def test_names_taken_or_unsafe(data_dir: Path) -> None:
    before = outside(data_dir)
    with owner_client(data_dir=data_dir) as client:
        assert post(client, archive(good_files()), name="mnist").status_code == 409
        for bad in ("../up", "Pets", "a/b", "", "x" * 41, ".hidden"):
            assert post(client, archive(good_files()), name=bad).status_code == 422, bad
        assert post(client, archive(good_files())).status_code == 201
        assert post(client, archive(good_files())).status_code == 409
    assert outside(data_dir) == before


def test_the_server_answers_while_an_import_runs(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()
    build = uploaded._build

    def slow_build(*args: Any) -> Any:
        started.set()
        assert release.wait(20)
        return build(*args)

    monkeypatch.setattr(uploaded, "_build", slow_build)
    with owner_client(data_dir=data_dir) as client:
        answer: dict[str, Any] = {}
        poster = threading.Thread(target=lambda: answer.update(res=post(client, archive(good_files()))))
        poster.start()
        assert started.wait(20)
        assert client.get("/healthz").status_code == 200  # the import holds a worker thread, not the event loop
        assert post(client, archive(good_files()), name="second").status_code == 429  # one import at a time
        release.set()
        poster.join(20)
        assert answer["res"].status_code == 201
