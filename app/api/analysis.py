"""What each filter detects: a snapshot's top test-set patches and filter health, one conv layer at a time."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool

from ..schemas import TopLayerOut
from .deps import ManagerDep, RunDep, SeqPath
from .errors import shown

router = APIRouter(prefix="/api/runs", tags=["history"])


@router.get("/{run_id}/snapshots/{seq}/top/{layer}",
            responses={404: {"description": "Unknown run or layer, or no analysis of this snapshot"}})
async def top_patches(run: RunDep, runs: ManagerDep, layer: str, seq: SeqPath) -> TopLayerOut:
    """For every filter of `layer` at snapshot `seq` (step 0 or an epoch end): the 9 test images it responds to
    most, with the receptive field of each maximum, and whether it is dead or a near-duplicate."""
    found = await run_in_threadpool(runs.store.analysis, run.id, seq)
    if found is None:
        have = ", ".join(str(s) for s in run.record.analysis_fields()["analyses"]) or "none yet"
        raise HTTPException(404, f"Snapshot {seq} of run {run.id} has no filter analysis; analyses are made at step "
                                 f"0 and at the end of every epoch (this run's snapshots with one: {have}).")
    layers = {entry["layer"]: entry for entry in found["layers"]}
    if layer not in layers:
        raise HTTPException(404, f"There is no conv layer {shown(layer)!r} in this run; its layers are "
                                 f"{', '.join(layers)}.")
    return TopLayerOut.model_validate({**layers[layer], "seq": found["seq"], "step": found["step"],
                                       "epoch": found["epoch"]})
