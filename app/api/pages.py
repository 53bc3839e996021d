"""The page: one server-rendered template; the rest happens in static/js over the API and the socket."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app import __version__
from app.api.meta import datasets, models
from app.paths import TEMPLATES
from app.schemas import RunConfig
from app.training.events import status_table
from app.training.loop import OPTIMIZERS

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=TEMPLATES)


def page_context() -> dict[str, object]:
    """What every page's template and boot data hold: data sets, models, optimizers, the default config,
    the statuses, the version. `boot` is all of it, as the page's script reads it (one JSON object)."""
    boot: dict[str, object] = {
        "datasets": [d.model_dump() for d in datasets()],
        "models": [m.model_dump() for m in models()],
        "defaults": RunConfig().model_dump(),
        "optimizers": OPTIMIZERS,
        "statuses": status_table(),
        "version": __version__,
    }
    return {**boot, "boot": boot}


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    """The filterscope page; `/?run=<id>` attaches it to an existing run (read by the page's script)."""
    return templates.TemplateResponse(request, "index.html", page_context())
