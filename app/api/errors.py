"""Refusals a person can act on: body-level errors say what is wrong and what is accepted.

FastAPI's own answers stay for field errors (a message per field, which the page puts next to the field),
but a body that is not JSON, or JSON that is not an object, gets a sentence instead of "JSON decode error"
or "There was an error parsing the body".
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

ACCEPTED = "send a JSON object such as {\"dataset\": \"mnist\", \"lr\": 0.003} (fields and bounds: /docs)"
UNREADABLE = "There was an error parsing the body"  # FastAPI's words for a body it could not decode
ECHO_CHARS = 200  # a 422 shows at most this much of the value it refused: never a 40 MB echo of the input
# A sentence names a run id, layer or file it could not find by at most this much of it: enough to recognise a
# typo, and a 60 KB id in a URL is never sent back whole.
SHOWN_CHARS = 40


def shown(text: str) -> str:
    """`text` (a person's input) as a sentence may quote it: whole when short, else its start and "…"."""
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}…"


def short_input(value: Any) -> Any:
    """`value` as a 422 may show it: as is when small and finite, else a truncated JSON-ish text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity: say it in words
    try:
        text = json.dumps(value, allow_nan=False, default=str)
    except (ValueError, TypeError):
        text = str(value)
    else:
        if len(text) <= ECHO_CHARS:
            return value
    return text if len(text) <= ECHO_CHARS else f"{text[:ECHO_CHARS]}... ({len(text):,} characters)"


def explain(error: dict[str, Any]) -> dict[str, Any]:
    """`error` with a sentence for `msg` when the body as a whole is wrong; field errors as they are."""
    shown = {**error, "input": short_input(error["input"])} if "input" in error else dict(error)
    if "ctx" in error:
        shown["ctx"] = {k: short_input(v) for k, v in error["ctx"].items()}
    return _in_words(error, shown)


def _in_words(error: dict[str, Any], shown: dict[str, Any]) -> dict[str, Any]:
    """`shown` with a sentence for `msg` when the body as a whole is wrong (judged on the original `error`)."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        return {**shown, "msg": f"The body is not valid JSON ({reason}); {ACCEPTED}."}
    if loc == ("body",) and error.get("type") in ("model_attributes_type", "dict_type"):
        kind = type(error.get("input")).__name__
        return {**shown, "msg": f"The body must be a JSON object, not {_json_name(kind)}; {ACCEPTED}."}
    return shown


def _json_name(python_type: str) -> str:
    return {"list": "an array", "str": "a string", "int": "a number", "float": "a number",
            "bool": "true or false", "NoneType": "null"}.get(python_type, python_type)


async def validation_error(_request: Request, exc: Exception) -> Response:
    """422 with FastAPI's list of errors, body-level ones in words."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder([explain(e) for e in exc.errors()])})


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's answer, but a body FastAPI could not even decode gets a sentence."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.detail == UNREADABLE:
        exc = HTTPException(400, f"The body could not be read (it is not UTF-8 JSON text); {ACCEPTED}.")
    return await http_exception_handler(request, exc)


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
