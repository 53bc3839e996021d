"""Runs: create, list, read, control (pause, resume, step, stop, learning rate, probe) and delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Response
from fastapi.concurrency import run_in_threadpool

from app.api.deps import CreatorDep, ManagerDep, OwnedRunDep, RunDep
from app.runs import NotResumable, Run, RunManager, TooManyRuns, Waiting
from app.schemas import CreatedRunOut, LrPatch, ProbeIndex, RunConfig, RunOut
from app.training.engine import Engine, StateError

router = APIRouter(prefix="/api/runs", tags=["runs"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown run"}}
CONFLICT: dict[int | str, dict[str, Any]] = {**NOT_FOUND, 409: {"description": "Not possible in the run's state"}}
OWNER: dict[int | str, dict[str, Any]] = {
    **CONFLICT, 401: {"description": "No control token (Authorization: Bearer <token>)"},
    403: {"description": "Not this run's control token"}}
BUSY: dict[int | str, dict[str, Any]] = {429: {"description": "Too many runs training (or queued) at once"}}


def run_out(run: Run) -> RunOut:
    """The run as an answer."""
    return RunOut.model_validate(run.describe())


@router.post("", status_code=201, responses={
    **BUSY, 400: {"description": "The body is not UTF-8 text"}, 401: {"description": "The server token is needed"},
    413: {"description": "The body is over the JSON cap"}, 415: {"description": "Not application/json"}})
async def create_run(runs: ManagerDep, _creator: CreatorDep, config: Annotated[RunConfig, Body()]) -> CreatedRunOut:
    """Create a run from `config` (a JSON object, every field optional: {} for the defaults) and start training;
    while as many runs train as the server allows, it waits as `queued` (its `queue_position` says where) and
    starts when a slot frees (429 only when the queue itself is full).

    The answer carries the run's control token, given only here: pause, resume, step, stop, the learning rate
    and the probe need it as `Authorization: Bearer <token>`.
    """
    try:
        run, token = await run_in_threadpool(runs.create, config)
    except TooManyRuns as exc:
        raise HTTPException(429, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return CreatedRunOut.model_validate({**run.describe(), "token": token})


@router.get("")
def list_runs(runs: ManagerDep) -> list[RunOut]:
    """Every stored run, newest first."""
    return [run_out(r) for r in runs.list()]


@router.get("/{run_id}", responses=NOT_FOUND)
def get_run(run: RunDep) -> RunOut:
    """One run with its history."""
    return run_out(run)


def _control(run: Run, action: Callable[[Engine], None], runs: RunManager, waiting_ok: bool = False) -> RunOut:
    try:
        if run.engine is None and not run.waiting:
            raise StateError(no_engine(run))
        runs.control(run, action, waiting_ok=waiting_ok)
    except (StateError, Waiting) as exc:
        raise HTTPException(409, str(exc)) from None
    except TooManyRuns as exc:
        raise HTTPException(429, str(exc)) from None
    runs.store.flush()  # the answer shows the state the change led to, as stored (a few ms)
    return run_out(run)


@router.post("/{run_id}/pause", responses=OWNER)
def pause(run: OwnedRunDep, runs: ManagerDep) -> RunOut:
    """Pause after the current batch; answers once training has stopped (nothing follows `paused`)."""
    return _control(run, Engine.pause, runs)


def no_engine(run: Run) -> str:
    if run.status.value == "interrupted":
        return f"This run was interrupted; resume it first (POST /api/runs/{run.id}/resume)."
    return f"This run has ended ({run.status.value}); start a new run to train again."


@router.post("/{run_id}/resume", responses={**OWNER, **BUSY})
def resume(run: OwnedRunDep, runs: ManagerDep) -> RunOut:
    """Resume a paused run, or continue an interrupted one from its last checkpoint (429 while as many other
    runs train as the server allows). An interrupted run goes on exactly as if it had never stopped."""
    try:
        runs.resume(run)
    except (NotResumable, StateError) as exc:
        raise HTTPException(409, str(exc)) from None
    except TooManyRuns as exc:
        raise HTTPException(429, str(exc)) from None
    runs.store.flush()
    return run_out(run)


@router.post("/{run_id}/step", responses={**OWNER, **BUSY})
def step(run: OwnedRunDep, runs: ManagerDep) -> RunOut:
    """Train up to the next snapshot, then pause."""
    return _control(run, lambda e: runs.wake(run, e.step), runs)


@router.post("/{run_id}/stop", responses=OWNER)
def stop(run: OwnedRunDep, runs: ManagerDep) -> RunOut:
    """Stop for good; the history stays. A run waiting in the queue is cancelled (it never trains)."""
    return _control(run, Engine.stop, runs, waiting_ok=True)


@router.patch("/{run_id}", responses=OWNER)
def set_lr(run: OwnedRunDep, runs: ManagerDep, patch: LrPatch) -> RunOut:
    """Change the learning rate of a live run from its next batch on."""
    return _control(run, lambda e: e.set_lr(patch.lr), runs)


@router.put("/{run_id}/probe", responses={**OWNER, 422: {"description": "Index out of range"}})
def set_probe(run: OwnedRunDep, runs: ManagerDep, probe: ProbeIndex) -> RunOut:
    """Show test image `index` as the probe; a fresh snapshot follows on the socket, also when paused."""
    try:
        return _control(run, lambda e: e.set_probe_index(probe.index), runs)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.delete("/{run_id}", status_code=204, responses=OWNER)
def delete(run: OwnedRunDep, runs: ManagerDep) -> Response:
    """Delete the run and its whole history (a live run is stopped first); its watchers are told (4410)."""
    runs.delete(run)
    return Response(status_code=204)
