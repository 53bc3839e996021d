"""What the server offers: health, the registered data sets (and their test images) and models."""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
import torch
from fastapi import APIRouter, HTTPException, Response
from fastapi.concurrency import run_in_threadpool
from PIL import Image

from .. import __version__
from ..schemas import DatasetOut, Health, LabelsOut, ModelOut
from ..training import transfer
from ..training.datasets import DatasetInfo, get_dataset, list_datasets
from ..training.datasets.registry import names as dataset_names
from ..training.models import PresetInfo, build_model, conv_layers
from ..training.models import get as get_model
from ..training.models import names as model_names
from .deps import ManagerDep

router = APIRouter(tags=["meta"])


@router.get("/healthz")
def healthz(runs: ManagerDep) -> Health:
    """Liveness, and whether the server can save what it is given (`storage`: why not)."""
    return Health(version=__version__, storage=runs.store.writer.failure)


@router.get("/api/datasets")
def datasets() -> list[DatasetOut]:
    """The data sets a run can train on: every registered one, in registration order."""
    return [dataset_out(info) for info in list_datasets()]


def dataset_out(info: DatasetInfo) -> DatasetOut:
    """One data set's description."""
    return DatasetOut(name=info.name, title=info.title, description=info.description, classes=list(info.classes),
                      channels=info.channels, size=info.size, kind=info.kind, licence=info.licence,
                      train_count=info.train_count, test_count=info.test_count,
                      source=info.source)


@router.get("/api/models")
def models() -> list[ModelOut]:
    """The models a run can train: every registered one, in registration order."""
    return [_model_out(get_model(name)) for name in model_names()]


@lru_cache(maxsize=64)  # keyed by the preset itself: one registered again under its name is described afresh
def _model_out(preset: PresetInfo) -> ModelOut:
    # On the meta device: shapes only, no weights to initialise, so no torch work in this request thread
    # (a thread that computes gets an OpenMP pool of its own, which slows training; see threads.py).
    with torch.device("meta"):
        model = build_model(preset.name, 1, 28, 10)
    layers = [{"name": c.name, "in_channels": c.conv.in_channels, "out_channels": c.conv.out_channels,
               "kernel": tuple(c.conv.kernel_size), "pool": c.pool_info()} for c in conv_layers(model)]
    return ModelOut(name=preset.name, title=preset.title, description=preset.description,
                    parameters=sum(p.numel() for p in model.parameters()), layers=layers,
                    freezable=transfer.layers(model), lr=preset.lr)


@router.get("/api/datasets/{name}/test/{index}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}},
                       404: {"description": "No such data set, or no such test image in it"}})
async def test_image(name: str, index: int) -> Response:
    """One test image as PNG, for choosing a probe."""
    _known_dataset(name)
    data = await run_in_threadpool(get_dataset, name)
    if not 0 <= index < len(data.x_test):
        raise HTTPException(404, f"Test image {index} does not exist: {name} has {len(data.x_test)} "
                                 f"(0-{len(data.x_test) - 1}).")
    return Response(png_bytes(data.x_test[index]), media_type="image/png",
                    headers={"Cache-Control": "public, max-age=86400", "X-Label": str(int(data.y_test[index]))})


@router.get("/api/datasets/{name}/test.u8", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}, 404: {"description": "No such data set"}})
async def test_pixels(name: str) -> Response:
    """Every test image at once, uint8 (N, C, H, W) in C order, shape in `X-Shape`: the page crops the top
    patches of every filter from it (one request for the whole run, instead of one per image)."""
    _known_dataset(name)
    data = await run_in_threadpool(get_dataset, name)
    pixels = np.ascontiguousarray(data.x_test, dtype=np.uint8)
    return Response(pixels.tobytes(), media_type="application/octet-stream",
                    headers={"Cache-Control": "public, max-age=86400", "X-Shape": ",".join(map(str, pixels.shape))})


@router.get("/api/datasets/{name}/labels", responses={404: {"description": "No such data set"}})
async def test_labels(name: str) -> LabelsOut:
    """The class of every test image, in order: the probe strip names what each image shows."""
    _known_dataset(name)
    data = await run_in_threadpool(get_dataset, name)
    return LabelsOut(classes=list(data.info.classes), test=[int(y) for y in data.y_test])


def _known_dataset(name: str) -> None:
    """404 naming the registered data sets unless `name` is one."""
    known = dataset_names()
    if name not in known:
        raise HTTPException(404, f"There is no data set {name[:40]!r}; known: {', '.join(known)}.")


def png_bytes(pixels: np.ndarray) -> bytes:
    """(C, H, W) uint8 to PNG bytes (grey for one channel)."""
    arr = pixels[0] if pixels.shape[0] == 1 else np.transpose(pixels, (1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()
