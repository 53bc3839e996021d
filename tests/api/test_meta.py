"""Health, data sets, test images, model presets."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from PIL import Image


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "version": "0.1.0", "storage": None}


def test_datasets_describe_themselves(client: TestClient) -> None:
    body = {d["name"]: d for d in client.get("/api/datasets").json()}
    assert set(body) == {"mnist", "fashion-mnist", "shapes", "shapes-color"}
    assert body["mnist"]["classes"] == [str(i) for i in range(10)]
    assert (body["mnist"]["train_count"], body["mnist"]["test_count"]) == (8000, 2000)
    assert body["shapes-color"]["channels"] == 3
    assert all("MIT" in body[n]["licence"] for n in ("mnist", "fashion-mnist"))


def test_a_test_image_is_a_png_with_its_label(client: TestClient) -> None:
    res = client.get("/api/datasets/mnist/test/3.png")
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(res.content))
    assert image.size == (28, 28) and image.mode == "L"
    assert res.headers["x-label"].isdigit()
    rgb = Image.open(io.BytesIO(client.get("/api/datasets/shapes-color/test/0.png").content))
    assert rgb.mode == "RGB" and rgb.size == (32, 32)


def test_unknown_dataset_or_index_is_404_with_a_reason(client: TestClient) -> None:
    res = client.get("/api/datasets/cifar/test/0.png")
    assert res.status_code == 404 and "known: " in res.json()["detail"]
    res = client.get("/api/datasets/mnist/test/2000.png")
    assert res.status_code == 404 and "0-1999" in res.json()["detail"]


def test_models_list_their_conv_layers(client: TestClient) -> None:
    body = {m["name"]: m for m in client.get("/api/models").json()}
    assert set(body) == {"tiny", "lenet5", "classic"}
    assert [(x["out_channels"], x["kernel"]) for x in body["classic"]["layers"]] == [
        (32, [3, 3]), (64, [3, 3]), (64, [3, 3])]
    assert body["tiny"]["parameters"] > 0


def test_the_page_renders_with_the_defaults(client: TestClient) -> None:
    res = client.get("/")
    assert res.status_code == 200 and "text/html" in res.headers["content-type"]
    assert "filterscope" in res.text


def test_openapi_describes_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/healthz", "/api/datasets", "/api/models", "/api/runs", "/api/runs/{run_id}",
                 "/api/runs/{run_id}/pause", "/api/runs/{run_id}/resume", "/api/runs/{run_id}/step",
                 "/api/runs/{run_id}/stop", "/api/runs/{run_id}/probe", "/api/runs/{run_id}/snapshots"):
        assert path in paths, path
