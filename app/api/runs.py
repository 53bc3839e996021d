"""Runs: create, list, read, and control (pause, resume, step, stop, learning rate, probe)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ManagerDep, RunDep
from app.runs import Run, TooManyRuns
from app.schemas import LrPatch, ProbeIndex, RunConfig, RunOut, SnapshotRef
from app.training.engine import Engine, StateError

router = APIRouter(prefix="/api/runs", tags=["runs"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown run"}}
CONFLICT: dict[int | str, dict[str, Any]] = {**NOT_FOUND, 409: {"description": "Not possible in the run's state"}}


def run_out(run: Run) -> RunOut:
    """The run as an answer."""
    return RunOut.model_validate(run.describe())


@router.post("", status_code=201, responses={400: {"description": "The body is not UTF-8 text"},
                                             429: {"description": "Too many runs training at once"}})
async def create_run(runs: ManagerDep, config: Annotated[RunConfig | None, Body()] = None) -> RunOut:
    """Create a run from `config` (every field optional) and start training it."""
    try:
        run = await run_in_threadpool(runs.create, config or RunConfig())
    except TooManyRuns as exc:
        raise HTTPException(429, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return run_out(run)


@router.get("")
def list_runs(runs: ManagerDep) -> list[RunOut]:
    """Every run the server holds, newest first."""
    return [run_out(r) for r in runs.list()]


@router.get("/{run_id}", responses=NOT_FOUND)
def get_run(run: RunDep) -> RunOut:
    """One run with its history."""
    return run_out(run)


def _control(run: Run, action: Callable[[Engine], None]) -> RunOut:
    try:
        action(run.engine)
    except StateError as exc:
        raise HTTPException(409, str(exc)) from None
    return run_out(run)


@router.post("/{run_id}/pause", responses=CONFLICT)
def pause(run: RunDep) -> RunOut:
    """Pause after the current batch; answers once training has stopped (nothing follows `paused`)."""
    return _control(run, Engine.pause)


@router.post("/{run_id}/resume", responses=CONFLICT)
def resume(run: RunDep) -> RunOut:
    """Resume a paused run."""
    return _control(run, Engine.resume)


@router.post("/{run_id}/step", responses=CONFLICT)
def step(run: RunDep) -> RunOut:
    """Train up to the next snapshot, then pause."""
    return _control(run, Engine.step)


@router.post("/{run_id}/stop", responses=CONFLICT)
def stop(run: RunDep) -> RunOut:
    """Stop for good; the history stays."""
    return _control(run, Engine.stop)


@router.patch("/{run_id}", responses=CONFLICT)
def set_lr(run: RunDep, patch: LrPatch) -> RunOut:
    """Change the learning rate of a live run from its next batch on."""
    return _control(run, lambda e: e.set_lr(patch.lr))


@router.put("/{run_id}/probe", responses={**CONFLICT, 422: {"description": "Index out of range"}})
def set_probe(run: RunDep, probe: ProbeIndex) -> RunOut:
    """Show test image `index` as the probe; a fresh snapshot follows on the socket, also when paused."""
    try:
        return _control(run, lambda e: e.set_probe_index(probe.index))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/{run_id}/snapshots", responses=NOT_FOUND)
def snapshots(run: RunDep) -> list[SnapshotRef]:
    """The snapshots kept in memory, oldest first: every epoch end and the latest 50 others."""
    return [SnapshotRef(seq=s.seq, step=s.step, epoch=s.epoch, epoch_end=s.epoch_end)
            for s in run.engine.snapshots.list()]
