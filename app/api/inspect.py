"""Uploads: what the model, at any kept snapshot, makes of a person's own image; or make it the live probe.

The work goes to the lane of whoever asks (api/limits.py): the run's owner (the request carries its control
token) on theirs, a viewer's on the rebuild lane if the moment's model must be replayed, else on the quick one.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from ..background import Lane
from ..record.follows import SnapshotRef as Moment
from ..runs import Run, RunManager, Waiting
from ..schemas import FeatureMapsOut, InputOut, InspectOut, PredictionOut, RunOut, SnapshotRef
from ..streaming.codec import encode_u8_json
from ..training.datasets import get_dataset
from ..training.events import StateError
from ..training.preprocess import Prepared
from .deps import ManagerDep, OwnedRunDep, RunDep, SettingsDep, bearer
from .limits import Lanes, lanes
from .meta import png_bytes
from .runs import CONFLICT, OWNER, run_out
from .uploads import UPLOAD_BODY, decode, prepare_upload, read_upload

router = APIRouter(prefix="/api/runs", tags=["inspect"])

UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {413: {"description": "File too large, or too many pixels"},
                 415: {"description": "Not an image, or a format that is not accepted"},
                 422: {"description": "Empty, truncated or unreadable file, or no field 'file'"},
                 429: {"description": "As many images are being worked on as this server keeps waiting"}}
LanesDep = Annotated[Lanes, Depends(lanes)]


def viewer(run: Run, request: Request, authorization: str | None) -> str | None:
    """Whose bounds a request takes: None for the run's owner (it carries the run's control token), else the
    viewer's address."""
    token = bearer(authorization)
    if token is not None and run.owned_by(token):
        return None
    return request.client.host if request.client else "?"


async def lane_for(lanes: Lanes, runs: RunManager, run: Run, snap: Moment | None, client: str | None) -> Lane:
    """The owner's lane; for a viewer, the rebuild lane if the moment's model must be replayed, else the quick one."""
    if client is None:
        return lanes.owner
    return lanes.rebuilds if await run_in_threadpool(needs_replay, runs, run, snap) else lanes.viewers


def needs_replay(runs: RunManager, run: Run, snap: Moment | None) -> bool:
    """Whether the model at `snap` must be rebuilt by replaying training (RunManager.model_state's last way):
    not built, not in memory, no checkpoint at its step. Blocking (a store read). None (no such moment): no."""
    if snap is None:
        return False
    if run.inspector.has(snap.seq) or run.record.recent_state(snap.seq) is not None:
        return False
    exact = runs.store.checkpoint(run.id, at_or_before_step=snap.step)
    return exact is None or exact.step != snap.step


@router.post("/{run_id}/inspect", openapi_extra=UPLOAD_BODY,
             responses={**CONFLICT, **UPLOAD_ERRORS, 404: {"description": "Unknown run or snapshot"}})
async def inspect(run: RunDep, runs: ManagerDep, settings: SettingsDep, lanes: LanesDep, request: Request,
                  snapshot: int | None = None, authorization: Annotated[str | None, Header()] = None) -> InspectOut:
    """Run an uploaded image (multipart field `file`) through the model as it was at snapshot `snapshot`
    (default: the latest). Any snapshot of any stored run: an old one may take a second or two, replayed from
    the checkpoint before it."""
    if not run.capabilities.inspectable:
        raise HTTPException(409, run.not_inspectable())
    snap = run.record.find(snapshot)
    if snap is None:
        if snapshot is None:
            raise HTTPException(409, "This run has no snapshot yet; try again once training has started.")
        raise HTTPException(404, f"Run {run.id} has no snapshot {snapshot}; GET /api/runs/{run.id}/snapshots "
                                 "lists its snapshots.")
    info = get_dataset(run.config.dataset).info
    data = await read_upload(request, settings)

    def work() -> tuple[Prepared, dict[str, np.ndarray], np.ndarray]:
        prepared = decode(data, info, settings)
        state = None if run.inspector.has(snap.seq) else runs.model_state(run, snap.seq, snap.step)
        return prepared, *run.inspector.run(snap.seq, state, prepared.normalised(info))

    client = viewer(run, request, authorization)
    prepared, maps, probs = await lanes.run(await lane_for(lanes, runs, run, snap, client), client, work)
    best = int(probs.argmax())
    return InspectOut(
        snapshot=SnapshotRef(seq=snap.seq, step=snap.step, epoch=snap.epoch, epoch_end=snap.epoch_end),
        input=InputOut(shape=list(prepared.pixels.shape), inverted=prepared.inverted,
                       original_size=prepared.original_size, colour=prepared.colour,
                       png=base64.b64encode(png_bytes(prepared.pixels)).decode()),
        prediction=PredictionOut(index=best, name=info.classes[best], probabilities=[float(p) for p in probs]),
        classes=list(info.classes),
        layers=[FeatureMapsOut(name=name, **encode_u8_json(fmap)) for name, fmap in maps.items()],
    )


@router.post("/{run_id}/probe", openapi_extra=UPLOAD_BODY, responses={**OWNER, **UPLOAD_ERRORS})
async def upload_probe(run: OwnedRunDep, runs: ManagerDep, settings: SettingsDep, lanes: LanesDep,
                       request: Request) -> RunOut:
    """Make an uploaded image (multipart field `file`) the run's probe; a fresh snapshot follows on the socket."""
    if not run.capabilities.inspectable:
        raise HTTPException(409, run.not_inspectable())
    prepared = await prepare_upload(await read_upload(request, settings), get_dataset(run.config.dataset).info,
                                    settings, lanes)
    try:
        runs.control(run, lambda h: h.set_probe_pixels(prepared.pixels))
    except (StateError, Waiting) as exc:
        raise HTTPException(409, str(exc)) from None
    return run_out(run)
