"""Uploads through the real app: every everyday image works, every bad file gets a clear 4xx."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from filterscope.training.datasets import get_dataset
from tests.api.conftest import owner_client, start_run, wait_status
from tests.conftest import wait_for


@pytest.fixture(scope="module")
def trained() -> Iterator[tuple[TestClient, dict[str, Any]]]:
    """A server (default limits: 10 MB per file) with a `tiny` run trained for 3 epochs on mnist: a network that
    reads handwriting. Tests that only need some finished run use `finished_run`, trained once per session."""
    with owner_client() as client:
        run = start_run(client, epochs=3, batch_size=64, snapshot_every=50)
        yield client, wait_status(client, run["id"], "finished", timeout=120)


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def upload(client: TestClient, run_id: str, data: bytes, name: str = "x.png", query: str = "") -> Any:
    return client.post(f"/api/runs/{run_id}/inspect{query}", files={"file": (name, data, "application/octet-stream")})


def digit_photo(pixels: np.ndarray, size: tuple[int, int] = (400, 300), at: tuple[int, int] = (30, 40)) -> Image.Image:
    """An MNIST digit as a person would photograph it: dark ink, light uneven paper, off-centre, big."""
    ink = Image.fromarray(255 - pixels[0]).resize((140, 140), Image.Resampling.BICUBIC)
    paper = Image.linear_gradient("L").resize(size).point(lambda v: 200 + v // 6)  # 200..242, uneven light
    paper.paste(Image.fromarray(np.minimum(np.asarray(paper.crop((*at, at[0] + 140, at[1] + 140))),
                                           np.asarray(ink))), at)
    return paper


def checked(res: Any, run: dict[str, Any]) -> dict[str, Any]:
    assert res.status_code == 200, res.text
    body: dict[str, Any] = res.json()
    assert body["input"]["shape"] == [1, 28, 28]
    probs = body["prediction"]["probabilities"]
    assert len(probs) == 10 and abs(sum(probs) - 1) < 1e-4
    assert body["prediction"]["index"] == int(np.argmax(probs))
    assert body["prediction"]["name"] == body["classes"][body["prediction"]["index"]]
    for layer, geometry in zip(body["layers"], run["layers"], strict=True):
        assert layer["name"] == geometry["name"] and layer["shape"] == geometry["fmap"]
        assert len(base64.b64decode(layer["data"])) == int(np.prod(geometry["fmap"]))
        assert len(layer["lo"]) == len(layer["hi"]) == geometry["fmap"][0]
    shown = Image.open(io.BytesIO(base64.b64decode(body["input"]["png"])))
    assert shown.size == (28, 28)
    return body


def everyday_images() -> dict[str, tuple[str, bytes]]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    drawing = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    ImageDraw.Draw(drawing).line([(100, 30), (100, 170)], fill=(0, 0, 0, 255), width=14)
    frames = [Image.new("P", (50, 50), i) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    big = Image.merge("RGB", [Image.linear_gradient("L").resize((4000, 3000)),  # photo-like: smooth, a few MB
                              Image.radial_gradient("L").resize((4000, 3000)),
                              Image.linear_gradient("L").rotate(90).resize((4000, 3000))])
    ImageDraw.Draw(big).ellipse((1200, 800, 2600, 2200), outline=(20, 20, 20), width=60)
    deep = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    return {
        "grey png": ("a.png", encode(Image.new("L", (28, 28), 0), "PNG")),
        "rgb jpeg": ("a.jpg", encode(rgb, "JPEG")),
        "transparent drawing": ("a.png", encode(drawing, "PNG")),
        "animated gif": ("a.gif", gif.getvalue()),
        "cmyk jpeg": ("a.jpg", encode(rgb.convert("CMYK"), "JPEG")),
        "16-bit png": ("a.png", encode(deep, "PNG")),
        "exif-rotated jpeg": ("a.jpg", encode(rgb, "JPEG", exif=exif)),
        "12 megapixel jpeg": ("a.jpg", encode(big, "JPEG", quality=80)),
        "webp": ("a.webp", encode(rgb, "WEBP")),
        "bmp": ("a.bmp", encode(rgb, "BMP")),
    }


@pytest.mark.parametrize("kind", list(everyday_images()))
def test_everyday_images_give_feature_maps_and_a_prediction(finished_run: tuple[TestClient, dict[str, Any]],
                                                             kind: str) -> None:
    client, run = finished_run
    name, data = everyday_images()[kind]
    body = checked(upload(client, run["id"], data, name), run)
    if kind == "exif-rotated jpeg":
        assert body["input"]["original_size"] == [60, 80]  # stored 80x60, shown 60x80
    if kind == "transparent drawing":
        assert body["input"]["inverted"]  # black on (transparent = white) paper becomes white on black


@pytest.mark.slow
def test_photographed_handwritten_digits_are_recognised(trained: tuple[TestClient, dict[str, Any]]) -> None:
    client, run = trained
    data = get_dataset("mnist")
    picked = [int(np.nonzero(data.y_test == d)[0][3]) for d in range(10)]  # one real test digit per class
    right = 0
    for i, index in enumerate(picked):
        photo = digit_photo(data.x_test[index], at=(20 + 25 * i, 30 + 10 * (i % 3)))
        body = checked(upload(client, run["id"], encode(photo.convert("RGB"), "JPEG", quality=90), "d.jpg"), run)
        assert body["input"]["inverted"]
        right += body["prediction"]["index"] == int(data.y_test[index])
    assert right >= 9, f"{right}/10 photographed digits recognised"


def test_any_kept_snapshot_can_be_chosen(finished_run: tuple[TestClient, dict[str, Any]]) -> None:
    client, run = finished_run
    snaps = client.get(f"/api/runs/{run['id']}/snapshots").json()
    first, last = snaps[0], snaps[-1]
    image = encode(digit_photo(get_dataset("mnist").x_test[0]), "PNG")
    early = checked(upload(client, run["id"], image, query=f"?snapshot={first['seq']}"), run)
    late = checked(upload(client, run["id"], image), run)
    assert early["snapshot"] == first and late["snapshot"] == last
    assert early["layers"][0]["data"] != late["layers"][0]["data"]  # the filters changed in between
    res = upload(client, run["id"], image, query="?snapshot=99999")
    assert res.status_code == 404 and "snapshots" in res.json()["detail"]


def truncated_png() -> bytes:
    data = encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8)), "PNG")
    return data[: len(data) // 2]


def bomb_png() -> bytes:
    """A tiny PNG whose header declares 50,000 x 50,000 pixels."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = bytearray(data[12:29])  # chunk type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", 50_000, 50_000)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


@pytest.mark.parametrize(("kind", "data", "status", "words"), [
    ("empty", b"", 422, "empty"),
    ("random bytes", bytes(np.random.default_rng(2).integers(0, 255, 5000, dtype=np.uint8)), 415, "PNG, JPEG"),
    ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>', 415, "SVG"),
    ("text", b"hello, this is not a picture", 415, "PNG, JPEG"),
    ("truncated png", truncated_png(), 422, "PNG"),
    ("decompression bomb", bomb_png(), 413, "pixels"),
    ("over the size limit", b"\x89PNG" + bytes(10 * 1024 * 1024 + 1), 413, "10 MB"),
])
def test_bad_files_get_a_clear_4xx(finished_run: tuple[TestClient, dict[str, Any]], kind: str, data: bytes,
                                   status: int, words: str) -> None:
    client, run = finished_run
    res = upload(client, run["id"], data, "upload.bin")
    assert res.status_code == status, res.text
    detail = res.json()["detail"]
    assert isinstance(detail, str) and words in detail and detail.endswith(".")


def test_malformed_requests_say_how_to_upload(finished_run: tuple[TestClient, dict[str, Any]]) -> None:
    client, run = finished_run
    res = client.post(f"/api/runs/{run['id']}/inspect", json={"file": "x"})  # not multipart: refused unread
    assert res.status_code == 415 and "multipart/form-data in a field named 'file'" in res.json()["detail"]
    res = client.post(f"/api/runs/{run['id']}/inspect", files={"other": ("a.png", b"123")})
    assert res.status_code == 422 and "'file'" in res.json()["detail"]
    res = client.post("/api/runs/nope/inspect", files={"file": ("a.png", b"123")})
    assert res.status_code == 404


def test_a_huge_declared_body_is_refused_before_it_is_read(finished_run: tuple[TestClient, dict[str, Any]]) -> None:
    client, run = finished_run
    res = client.post(f"/api/runs/{run['id']}/inspect", content=b"x" * 10,
                      headers={"content-type": "multipart/form-data; boundary=b", "content-length": "999999999"})
    assert res.status_code == 413 and "larger than 10 MB" in res.json()["detail"]


def test_bad_uploads_do_not_disturb_a_run_in_training() -> None:
    with owner_client() as client:
        run = start_run(client, epochs=5, batch_size=64)
        wait_status(client, run["id"], "running")
        # Training proper starts after step 0's filter analysis (one pass of the test set, ~0.2 s).
        wait_for(lambda: client.get(f"/api/runs/{run['id']}").json()["step"] > 0)
        before = client.get(f"/api/runs/{run['id']}").json()["step"]
        for data, status, words in [(b"", 422, "empty"), (truncated_png(), 422, "PNG"), (bomb_png(), 413, "pixels"),
                                    (b"<svg/>", 415, "SVG"), (b"hello", 415, "PNG, JPEG"),
                                    (b"\x89PNG" + bytes(10 * 1024 * 1024), 413, "10 MB")]:
            res = upload(client, run["id"], data)
            assert res.status_code == status and words in res.json()["detail"], (words, res.text)
        checked(upload(client, run["id"], encode(Image.new("RGB", (900, 700)), "JPEG"), "a.jpg"), run)
        after = client.get(f"/api/runs/{run['id']}").json()
        assert after["status"] == "running" and after["step"] > before
        client.post(f"/api/runs/{run['id']}/stop")


def test_an_upload_can_become_the_live_probe(client: TestClient) -> None:
    run = start_run(client, epochs=5)
    image = encode(digit_photo(get_dataset("mnist").x_test[1]), "PNG")
    with client.websocket_connect(f"/ws/runs/{run['id']}") as ws:
        res = client.post(f"/api/runs/{run['id']}/probe", files={"file": ("d.png", image, "image/png")})
        assert res.status_code == 200
        for _ in range(2000):
            msg = ws.receive()
            if msg.get("bytes") and b'"source":"upload"' in msg["bytes"][:4000]:
                break
            assert '"status":"failed"' not in (msg.get("text") or ""), msg["text"]
        else:
            raise AssertionError("no snapshot with the uploaded probe")
    res = client.post(f"/api/runs/{run['id']}/probe", files={"file": ("x", b"nope")})
    assert res.status_code == 415 and "PNG, JPEG" in res.json()["detail"]
    client.post(f"/api/runs/{run['id']}/stop")
