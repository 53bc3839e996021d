"""Runs: create, list, read, control (pause, resume, step, stop, learning rate, probe) and delete."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Response
from fastapi.concurrency import run_in_threadpool

from ..runs import NotResumable, Run, RunManager, TooManyRuns, Waiting
from ..runs.handle import RunHandle
from ..schemas import CreatedRunOut, LrPatch, ProbeIndex, RunConfig, RunOut
from ..training.events import StateError, Status
from .deps import CreatorDep, ManagerDep, OwnedRunDep, RunDep

router = APIRouter(prefix="/api/runs", tags=["runs"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown run"}}
CONFLICT: dict[int | str, dict[str, Any]] = {**NOT_FOUND, 409: {"description": "Not possible in the run's state"}}
OWNER: dict[int | str, dict[str, Any]] = {
    **CONFLICT, 401: {"description": "No control token (Authorization: Bearer <token>)"},
    403: {"description": "Not this run's control token"}}
BUSY: dict[int | str, dict[str, Any]] = {429: {"description": "Too many runs training (or queued) at once"}}


def run_out(run: Run) -> RunOut:
    """The run as an answer."""
    # The config as parsed (run.config_of): a run whose own data set was deleted since still validates.
    return RunOut.model_validate({**run.describe(), "config": run.config})


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
        await run_in_threadpool(runs.store.flush)  # the answer says `running` for a run that started
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


async def _control(run: Run, action: Callable[[RunHandle], None], runs: RunManager, *, waiting_ok: bool = False,
                   until: frozenset[Status] = frozenset()) -> RunOut:
    """Apply a control (it never blocks), then answer once the run reached a status in `until` (if given,
    for at most SETTLE_SECONDS: a batch plus an epoch's test pass takes well under that) and the change is
    stored, so the answer says what the control led to."""
    try:
        runs.control(run, action, waiting_ok=waiting_ok)
    except (StateError, Waiting) as exc:
        raise HTTPException(409, str(exc)) from None
    except TooManyRuns as exc:
        raise HTTPException(429, str(exc)) from None
    await settle(run, until)
    await run_in_threadpool(runs.store.flush)  # a few ms
    return run_out(run)


# How long a control's answer waits for the training thread to get where it was sent (pause, stop).
SETTLE_SECONDS = 10.0
ENDED = frozenset(s for s in Status if s.ended)


async def settle(run: Run, until: frozenset[Status]) -> None:
    """Wait, without holding a thread, until the run's committed status is in `until` (or the time is up)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while until and run.status not in until and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


@router.post("/{run_id}/pause", responses=OWNER)
async def pause(run: OwnedRunDep, runs: ManagerDep) -> RunOut:
    """Pause after the current batch; answers once training has stopped (nothing follows `paused`)."""
    return await _control(run, lambda h: h.pause(), runs, until=ENDED | {Status.PAUSED})


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
async def step(run: OwnedRunDep, runs: ManagerDep) -> RunOut:
    """Train up to the next snapshot, then pause."""
    return await _control(run, lambda h: runs.wake(run, h.step), runs)


@router.post("/{run_id}/stop", responses=OWNER)
async def stop(run: OwnedRunDep, runs: ManagerDep) -> RunOut:
    """Stop for good; the history stays. A run waiting in the queue is cancelled (it never trains). Answers
    once the run has stopped."""
    return await _control(run, lambda h: h.stop(), runs, waiting_ok=True, until=ENDED)


@router.patch("/{run_id}", responses=OWNER)
async def set_lr(run: OwnedRunDep, runs: ManagerDep, patch: LrPatch) -> RunOut:
    """Change the learning rate of a live run from its next batch on."""
    return await _control(run, lambda h: h.set_lr(patch.lr), runs)


@router.put("/{run_id}/probe", responses={**OWNER, 422: {"description": "Index out of range"}})
async def set_probe(run: OwnedRunDep, runs: ManagerDep, probe: ProbeIndex) -> RunOut:
    """Show test image `index` as the probe; a fresh snapshot follows on the socket, also when paused."""
    try:
        return await _control(run, lambda h: h.set_probe_index(probe.index), runs)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.delete("/{run_id}", status_code=204, responses=OWNER)
def delete(run: OwnedRunDep, runs: ManagerDep) -> Response:
    """Delete the run and its whole history (a live run is stopped first); its watchers are told (4410)."""
    runs.delete(run)
    return Response(status_code=204)
