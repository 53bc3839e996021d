"""A run's history: the list of its snapshots, any snapshot's frame, and one filter across all of them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from app.api.deps import FilterPath, ManagerDep, RunDep, SeqPath
from app.api.errors import shown
from app.record.export import NothingToExport, filters_gif, weights_npz
from app.record.trajectory import NoSuchFilter, trajectory
from app.runs import Run
from app.schemas import SnapshotRef

router = APIRouter(prefix="/api/runs", tags=["history"])

BINARY: dict[str, Any] = {"content": {"application/octet-stream": {}}}
# A frame never changes once written (snapshot numbers are never reused, even across a resume).
IMMUTABLE = "public, max-age=31536000, immutable"


def conv_layer(run: Run, layer: str) -> str:
    """`layer` if the run has a conv layer of that name, else 404 naming the ones it has."""
    names = [entry["name"] for entry in run.record.meta.get("layers", [])]
    if names and layer not in names:
        raise HTTPException(404, f"This run has no conv layer {shown(layer)!r}; its layers are {', '.join(names)}.")
    return layer


@router.get("/{run_id}/snapshots", responses={404: {"description": "Unknown run"}})
def snapshots(run: RunDep) -> list[SnapshotRef]:
    """Every snapshot of the run, oldest first."""
    return [SnapshotRef(seq=s.seq, step=s.step, epoch=s.epoch, epoch_end=s.epoch_end)
            for s in run.record.snapshot_list()]


@router.get("/{run_id}/snapshots/{seq}", response_class=Response,
            responses={200: BINARY, 304: {"description": "Not modified (If-None-Match)"},
                       404: {"description": "Unknown run or snapshot"}})
def snapshot_frame(run: RunDep, runs: ManagerDep, request: Request, seq: SeqPath) -> Response:
    """Snapshot `seq` as a binary frame, the same bytes as it was sent on the socket (docs/protocol.md)."""
    found = runs.store.frame(run.id, seq)
    if found is None:
        raise HTTPException(404, f"Run {run.id} has no snapshot {seq}; GET /api/runs/{run.id}/snapshots lists "
                                 "its snapshots.")
    frame, etag = found
    headers = {"ETag": f'"{etag}"', "Cache-Control": IMMUTABLE}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return Response(frame, media_type="application/octet-stream", headers=headers)


@router.get("/{run_id}/filters/{layer}/{index}", response_class=Response,
            responses={200: BINARY, 404: {"description": "Unknown run, layer or filter, or no snapshot yet"}})
def filter_trajectory(run: RunDep, runs: ManagerDep, layer: str, index: FilterPath) -> Response:
    """One filter's W, dW and ΔW at every snapshot, in one binary frame (docs/protocol.md)."""
    try:
        body = trajectory(runs.store.frames(run.id), conv_layer(run, layer), index, run.id)
    except NoSuchFilter as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(body, media_type="application/octet-stream", headers={"Cache-Control": "no-cache"})


@router.get("/{run_id}/export/filters.gif", response_class=Response,
            responses={200: {"content": {"image/gif": {}}}, 404: {"description": "Unknown run or layer"}})
def export_gif(run: RunDep, runs: ManagerDep, layer: str = "conv1") -> Response:
    """An animated GIF of one conv layer's filters over the run (one frame per snapshot, at most 300)."""
    try:
        body = filters_gif(runs.store.frames(run.id), conv_layer(run, layer))
    except NothingToExport as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(body, media_type="image/gif",
                    headers={"Content-Disposition": f'attachment; filename="{run.id}-{layer}.gif"'})


@router.get("/{run_id}/export/weights.npz", response_class=Response,
            responses={200: BINARY, 404: {"description": "Unknown run, or no snapshot yet"}})
def export_npz(run: RunDep, runs: ManagerDep) -> Response:
    """Every conv layer's weights at every snapshot: `{layer}.weight` (snapshots, out, in, kh, kw) float32,
    with `seq`, `step` and `epoch` per snapshot, as a NumPy .npz file."""
    try:
        body = weights_npz(runs.store.frames(run.id))
    except NothingToExport as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(body, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{run.id}-weights.npz"'})
