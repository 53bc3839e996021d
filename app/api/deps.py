"""Shared dependencies: settings, the run manager, and a run looked up by id (404 if unknown)."""

from __future__ import annotations

import secrets
from pathlib import Path as PathLib
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request

from ..background import exports as export_processes
from ..config import Settings
from ..record.exports_cache import ExportCache
from ..runs import Run, RunManager
from .errors import shown
from .limits import Builds, Pace


def settings(request: Request) -> Settings:
    """The app's settings."""
    s: Settings = request.app.state.settings
    return s


def manager(request: Request) -> RunManager:
    """The app's run manager."""
    m: RunManager = request.app.state.runs
    return m


class Exports:
    """Exports kept on disk, the builds under way, and the pace of sending them (one of each per app)."""

    # A quarter of the disk budget (512 MB of the default 2 GB; the npz of a 1,251-snapshot `classic` run is
    # 68 MB): exports can be made again, the runs they are made from cannot.
    SHARE = 4

    def __init__(self, data_dir: PathLib, max_disk: int) -> None:
        self.cache = ExportCache(data_dir, max_disk // self.SHARE)
        self.builds = Builds(export_processes)
        self.pace = Pace()
        self.cache.clear_scratch()  # what a server stopped mid-export left


async def exports(request: Request) -> Exports:
    """The app's exports, made on first use (on the event loop: one per app, however many requests ask at once)."""
    found: Exports | None = getattr(request.app.state, "exports", None)
    if found is None:
        found = request.app.state.exports = Exports(manager(request).data_dir, settings(request).max_disk)
    return found


def run(run_id: str, runs: Annotated[RunManager, Depends(manager)]) -> Run:
    """The run `run_id`, or 404."""
    found = runs.get(run_id)
    if found is None:
        raise HTTPException(404, f"There is no run {shown(run_id)!r}; GET /api/runs lists the runs this server "
                                 "holds.")
    return found


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _unauthorized(sentence: str) -> HTTPException:
    return HTTPException(401, sentence, headers={"WWW-Authenticate": "Bearer"})


def owned_run(run: Annotated[Run, Depends(run)], authorization: Annotated[str | None, Header()] = None) -> Run:
    """The run `run_id`, if the request carries its control token (401 without one, 403 with another)."""
    token = bearer(authorization)
    if token is None:
        raise _unauthorized("Only the browser that started this run can control it (send its control token as "
                            "Authorization: Bearer <token>, from the answer to POST /api/runs); anyone with the "
                            "link can watch it.")
    if not run.owned_by(token):
        raise HTTPException(403, "This token does not control this run; only the one its creator received does.")
    return run


def may_create(settings: Annotated[Settings, Depends(settings)],
               authorization: Annotated[str | None, Header()] = None) -> None:
    """Pass when no server token is set, or the request carries it (401 otherwise)."""
    if not settings.server_token:
        return
    token = bearer(authorization) or ""
    if not secrets.compare_digest(token.encode(), settings.server_token.encode()):
        raise _unauthorized("This server is reachable from the network, so starting a run needs its server token "
                            "(printed when it started): open the page with the link it printed, or send "
                            "Authorization: Bearer <server token>.")


# Snapshot numbers and filter indices count from 0, and no run comes near 2**31 of either (a run's steps are
# capped far below); SQLite's integers end at 2**63 - 1, and a larger number was a 500 (OverflowError). Past this
# bound a number is a 422 that says the bound, and the OpenAPI schema shows it.
INDEX_MAX = 2**31 - 1
SeqPath = Annotated[int, Path(ge=0, le=INDEX_MAX, description="a snapshot's number (GET /api/runs/{run_id}/"
                                                                 "snapshots lists them)")]
FilterPath = Annotated[int, Path(ge=0, le=INDEX_MAX, description="a filter of the layer, counted from 0")]

SettingsDep = Annotated[Settings, Depends(settings)]
ManagerDep = Annotated[RunManager, Depends(manager)]
RunDep = Annotated[Run, Depends(run)]
OwnedRunDep = Annotated[Run, Depends(owned_run)]  # controls: only the run's creator
CreatorDep = Annotated[None, Depends(may_create)]
ExportsDep = Annotated[Exports, Depends(exports)]
