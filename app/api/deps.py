"""Shared dependencies: settings, the run manager, and a run looked up by id (404 if unknown)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from app.config import Settings
from app.runs import Run, RunManager


def settings(request: Request) -> Settings:
    """The app's settings."""
    s: Settings = request.app.state.settings
    return s


def manager(request: Request) -> RunManager:
    """The app's run manager."""
    m: RunManager = request.app.state.runs
    return m


def run(run_id: str, runs: Annotated[RunManager, Depends(manager)]) -> Run:
    """The run `run_id`, or 404."""
    found = runs.get(run_id)
    if found is None:
        raise HTTPException(404, f"There is no run {run_id!r}; GET /api/runs lists the runs this server holds.")
    return found


SettingsDep = Annotated[Settings, Depends(settings)]
ManagerDep = Annotated[RunManager, Depends(manager)]
RunDep = Annotated[Run, Depends(run)]
