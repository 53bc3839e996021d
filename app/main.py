"""The ASGI app: lifespan (hub, run manager), static files, routers."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from . import __version__
from .api import analysis, compare, errors, history, inspect, meta, pages, runs, sweeps, watched, worked, ws
from .api import datasets as own_datasets
from .api.guard import Guard
from .config import Settings, get_settings
from .paths import PRETRAINED, STATIC
from .record import opening
from .record.store import Damaged
from .record.writer import StorageFailed
from .runs import RunManager, cluster
from .streaming.hub import Hub
from .training.datasets import get_dataset, uploaded
from .training.threads import serial_torch

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Pay one-time costs before the first run: torch's optimizer module imports torch._dynamo (~1.5 s)."""
    import torch

    serial_torch()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    get_dataset("mnist")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; `settings` defaults to the environment's."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub = Hub(settings.client_max_snapshots, settings.client_max_messages)
        # The lock, the checked store (with the shipped run) and every stored run: opened while the app was
        # imported when `filterscope serve` began it (record/opening.py), else now.
        opened = await asyncio.to_thread(opening.take, settings.data_dir,
                                         PRETRAINED if settings.pretrained else None)
        lock, store = opened.lock, opened.store
        # A person's own data sets, imported earlier, before the runs that trained on them come back.
        own = await asyncio.to_thread(uploaded.load_all, settings.data_dir)
        if settings.ray:  # runs train on the cluster, as many at once as its CPUs allow (RunManager)
            try:
                await asyncio.to_thread(cluster.connect, settings.ray)
            except BaseException:
                lock.release()
                raise
        manager = await asyncio.to_thread(
            RunManager, hub, asyncio.get_running_loop(), store, settings.max_active_runs, settings.max_disk,
            settings.training_threads, settings.checkpoint_seconds, lock=lock, ray=bool(settings.ray),
            stored=opened.runs)
        app.state.hub, app.state.runs = hub, manager
        # In the background, so the server answers at once and the first Start is not 1.5 s late; started once
        # the app is set to answer (the loop's next turn), not competing with the last of the start-up.
        warm = threading.Thread(target=warm_up, name="warm-up", daemon=True)
        asyncio.get_running_loop().call_soon(warm.start)
        yield
        # Training threads stop at their next batch; joining them must not block the loop.
        await asyncio.to_thread(manager.shutdown)
        if settings.ray:
            await asyncio.to_thread(cluster.disconnect)  # a `local` instance stops with it
        for name in own + [n for n in own_datasets.imported(app) if n not in own]:
            uploaded.forget(name)  # the registry is per process; another app may serve another directory

    app = FastAPI(title="filterscope", version=__version__, lifespan=lifespan,
                  description="Watch a convolutional network learn its filters. Wire protocol: docs/protocol.md.")
    app.state.settings = settings
    errors.install(app)

    @app.exception_handler(StorageFailed)
    async def storage_failed(_request: Request, exc: StorageFailed) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=507)  # Insufficient Storage: nothing was saved

    @app.exception_handler(Damaged)
    async def damaged(_request: Request, exc: Damaged) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=410)  # Gone: that row is lost, the rest is there

    app.add_middleware(Guard, allowed_hosts=settings.allowed_hosts, max_json_bytes=settings.max_json_bytes,
                       body_timeout=settings.body_timeout)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (pages, meta, own_datasets, runs, history, analysis, inspect, worked, ws, sweeps, compare, watched):
        app.include_router(module.router)
    return app


app = create_app()
