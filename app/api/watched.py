"""A watched run's own images (filterscope.watch, `images=`): what its top patches are cut from."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Response
from starlette.concurrency import run_in_threadpool

from ..record.images import load_images
from .deps import ManagerDep, RunDep
from .meta import png_bytes

router = APIRouter(prefix="/api/runs", tags=["runs"])
BINARY: dict[int | str, dict[str, Any]] = {200: {"content": {"application/octet-stream": {}}},
                                           404: {"description": "Unknown run, or no images"}}


def _images(run: RunDep, runs: ManagerDep) -> np.ndarray:
    pixels = load_images(runs.data_dir, run.id)
    if pixels is None:
        raise HTTPException(404, f"Run {run.id} keeps no images of its own: only a watched run given images= "
                                 "has them (a built-in run's come from its data set, GET /api/datasets).")
    return pixels


@router.get("/{run_id}/images.u8", response_class=Response, responses=BINARY)
async def run_images(run: RunDep, runs: ManagerDep) -> Response:
    """Every image the run's filters were analysed on, uint8 (N, C, H, W) in C order, shape in `X-Shape`
    (as GET /api/datasets/{name}/test.u8 for a built-in data set)."""
    pixels = await run_in_threadpool(lambda: np.ascontiguousarray(_images(run, runs)))
    return Response(pixels.tobytes(), media_type="application/octet-stream",
                    headers={"Cache-Control": "private, max-age=3600", "X-Shape": ",".join(map(str, pixels.shape))})


@router.get("/{run_id}/images/{index}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, 404: {"description": "Unknown run, or no such image"}})
async def run_image(run: RunDep, runs: ManagerDep, index: int) -> Response:
    """One of the run's images as PNG."""
    pixels = _images(run, runs)
    if not 0 <= index < len(pixels):
        raise HTTPException(404, f"Image {index} does not exist: run {run.id} keeps {len(pixels)} "
                                 f"(0-{len(pixels) - 1}).")
    return Response(png_bytes(np.asarray(pixels[index])), media_type="image/png")
