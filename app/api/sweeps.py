"""Sweeps: one run per value of one config field, queued behind the training cap, compared side by side."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from ..runs import RunManager, Sweep, TooManyRuns
from ..schemas import SWEEP_MAX, CreatedRunOut, CreatedSweepOut, RunConfig, SweepIn, SweepOut
from .deps import CreatorDep, ManagerDep
from .runs import run_out

router = APIRouter(prefix="/api/sweeps", tags=["sweeps"])


def _configs(body: SweepIn) -> tuple[str, list[Any], list[RunConfig]]:
    """The sweep's field, values and one valid config per value (422 with a sentence otherwise)."""
    if len(body.vary) != 1:
        raise HTTPException(422, f"`vary` must name exactly one config field, not {len(body.vary)}; e.g. "
                                 '{"lr": [0.0005, 0.005, 0.05]}.')
    ((field, values),) = body.vary.items()
    if field not in RunConfig.model_fields:
        raise HTTPException(422, f"`{field[:60]}` is not a run config field; one of: "
                                 f"{', '.join(RunConfig.model_fields)}.")
    if not 2 <= len(values) <= SWEEP_MAX:
        raise HTTPException(422, f"A sweep takes 2 to {SWEEP_MAX} values of `{field}`, not {len(values)}.")
    configs = []
    for i, value in enumerate(values):
        try:
            configs.append(RunConfig.model_validate({**body.base.model_dump(), field: value}))
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise HTTPException(422, f"vary.{field}[{i}] = {str(value)[:40]!s}: {reason}.") from None
    return field, values, configs


def _out(sweep: Sweep, runs: RunManager) -> SweepOut:
    found = [r for r in (runs.get(run_id) for run_id in sweep.runs) if r is not None]
    return SweepOut(id=sweep.id, created_at=sweep.created_at, field=sweep.field, values=sweep.values,
                    base=RunConfig.model_validate(sweep.base), runs=[run_out(r) for r in found])


@router.post("", status_code=201, responses={422: {"description": "No field, several, an unknown one, too few "
                                                                  "or too many values, or a bad value"},
                                            429: {"description": "The queue would be over its cap"}})
async def create_sweep(body: SweepIn, runs: ManagerDep, _creator: CreatorDep) -> CreatedSweepOut:
    """One run per value of one config field (2 to 8), queued behind the training cap in the order given.

    The answer carries each run's control token, given only here.
    """
    field, values, configs = _configs(body)
    try:
        sweep, created = await run_in_threadpool(runs.create_sweep, configs, field, values, body.base)
    except TooManyRuns as exc:
        raise HTTPException(429, str(exc)) from None
    except ValueError as exc:  # e.g. a train_subset larger than the data set
        raise HTTPException(422, str(exc)) from None
    out = _out(sweep, runs)
    return CreatedSweepOut(**{**out.model_dump(exclude={"runs"}), "runs": [
        CreatedRunOut.model_validate({**run.describe(), "token": token}) for run, token in created]})


@router.get("/{sweep_id}", responses={404: {"description": "Unknown sweep"}})
def get_sweep(sweep_id: str, runs: ManagerDep) -> SweepOut:
    """The sweep and its runs, in the order of its values."""
    sweep = runs.sweeps.get(sweep_id)
    if sweep is None:
        raise HTTPException(404, f"There is no sweep {sweep_id[:40]}.")
    return _out(sweep, runs)
