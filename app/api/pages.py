"""The page: one server-rendered template; the rest happens in static/js over the API and the socket.

The run form is rendered from the run config's JSON schema (the boot data's `config_schema`): its labels,
help, bounds, defaults and choices are the ones the API validates against, so the two cannot disagree.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from .. import __version__
from ..boot import ICON
from ..paths import TEMPLATES
from ..schemas import RunConfig
from ..training.config import CHOICE_TITLES
from ..training.events import status_table
from ..training.loop import OPTIMIZERS
from .meta import datasets, models

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=TEMPLATES)
templates.env.globals["icon"] = ICON  # the tab's icon, the starting page's too

# How the form lays the fields out; what they are (label, help, bounds, default, choices) is the schema's.
WIDE = frozenset({"dataset", "model"})  # the longest choice titles ("Coloured shapes"): a row each
STEPS = {"dropout": 0.05}  # the spinner's increment where "any" would step by 1 (any value in bounds is accepted)
PLACEHOLDERS = {"train_subset": "all"}  # what an empty box means
# Chosen on the probe panel (by clicking a test image) and on "fine-tune from here" (the start and frozen layers).
OFF_FORM = frozenset({"probe_index", "init_from", "freeze"})


def page_context() -> dict[str, object]:
    """What every page's template and boot data hold: data sets, models, optimizers, the run config's JSON
    schema and its defaults, the statuses, the version. `boot` is all of it, as the page's script reads it
    (one JSON object); `form` is the run form's fields, built from the schema."""
    boot: dict[str, Any] = {
        "datasets": [d.model_dump() for d in datasets()],
        "models": [m.model_dump() for m in models()],
        "config_schema": RunConfig.model_json_schema(),
        "defaults": RunConfig().model_dump(),  # the schema's defaults as one config, for scripts and tests
        "optimizers": OPTIMIZERS,
        "statuses": status_table(),
        "version": __version__,
    }
    return {**boot, "boot": boot, "form": form_fields(boot)}


def form_fields(boot: dict[str, Any]) -> list[dict[str, Any]]:
    """The run form's fields, in the schema's order: kind, label, help, value, and bounds or choices."""
    titled = {"dataset": boot["datasets"], "model": boot["models"]}
    fields = []
    for name, prop in boot["config_schema"]["properties"].items():
        if name in OFF_FORM:
            continue
        # A nullable field (train_subset) is anyOf [its type, null]: the box may be left empty.
        typed = next((p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"), prop)
        field: dict[str, Any] = {"name": name, "label": prop.get("title", name), "help": prop.get("description", ""),
                                 "wide": name in WIDE, "value": prop.get("default")}
        if "enum" in typed:
            infos = {i["name"]: i for i in titled.get(name, [])}
            titles = CHOICE_TITLES.get(name, {})
            field["kind"] = "select"
            field["choices"] = [{"value": v, "title": infos[v]["title"] if v in infos else titles.get(v, v),
                                 "description": infos[v]["description"] if v in infos else ""} for v in typed["enum"]]
        elif typed.get("type") == "boolean":
            field["kind"] = "checkbox"
        else:
            field.update(kind="number", placeholder=PLACEHOLDERS.get(name, ""), **_bounds(name, typed))
        fields.append(field)
    return fields


def _bounds(name: str, prop: dict[str, Any]) -> dict[str, Any]:
    """min, max and step of a number box; an exclusive bound becomes the last step short of it."""
    step: float | str = 1 if prop.get("type") == "integer" else STEPS.get(name, "any")
    inset = step if isinstance(step, (int, float)) else 0  # with step "any", the server's 422 says the rest
    low, high = prop.get("minimum"), prop.get("maximum")
    if "exclusiveMinimum" in prop:
        low = round(prop["exclusiveMinimum"] + inset, 12)
    if "exclusiveMaximum" in prop:
        high = round(prop["exclusiveMaximum"] - inset, 12)
    return {"min": low, "max": high, "step": step}


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    """The filterscope page; `/?run=<id>` attaches it to an existing run (read by the page's script)."""
    return templates.TemplateResponse(request, "index.html", page_context())
