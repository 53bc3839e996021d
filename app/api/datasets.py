"""A person's own data sets: import a zip of `<class>/<image>` files (POST), delete one (DELETE).

The list (GET /api/datasets) is meta.py's, with each set's `source`. The import itself is
training/datasets/uploaded.py, run off the event loop; this module reads the upload under its size cap and turns
the import's refusals into answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from ..training.datasets import get_info, uploaded
from .deps import CreatorDep, ManagerDep, SettingsDep
from .uploads import TooLarge, counted

router = APIRouter(tags=["datasets"])

STATUS = {"too_large": 413, "taken": 409, "not_a_zip": 415}  # every other refusal is 422

UPLOAD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "name"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "a .zip of one folder per class"},
        "name": {"type": "string", "description": "the data set's name: 1-40 of a-z, 0-9, '-', '_'"},
        "size": {"type": "integer", "minimum": uploaded.MIN_SIZE, "maximum": uploaded.MAX_SIZE,
                 "description": "side in pixels (default: 32 for colour, 28 for grey, at most the pictures' "
                                "median side)"},
        "channels": {"type": "integer", "enum": [1, 3],
                     "description": "1 grey or 3 RGB (default: RGB if any picture has colour)"},
    },
}}}}}


class ImportOut(BaseModel):
    """What an import made of the archive."""

    name: str
    classes: list[str]
    channels: int
    size: int
    train_count: int
    test_count: int
    train_per_class: dict[str, int]
    test_per_class: dict[str, int]
    skipped: dict[str, int] = Field(description="files left out, counted by reason (not an image, unreadable, ...)")
    skipped_examples: list[str] = Field(description="the first few files left out, each with its reason")
    examples: dict[str, list[int]] = Field(description="per class, the first few of its test images (indices for "
                                           "GET /api/datasets/{name}/test/{index}.png)")


def imported(app: FastAPI) -> list[str]:
    """The data sets imported through this app (forgotten by the registry when it shuts down)."""
    names: list[str] | None = getattr(app.state, "imported_datasets", None)
    if names is None:
        names = app.state.imported_datasets = []
    return names


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"The archive is larger than {limit / 1024 / 1024:g} MB, the most this server "
                              "accepts; use fewer or smaller pictures.")


def _int_field(form: Any, key: str) -> int | None:
    value = form.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.strip().isdigit():
        raise HTTPException(422, f"{key} must be a whole number, not {str(value)[:20]!r}.")
    return int(value)


@router.post("/api/datasets", status_code=201, openapi_extra=UPLOAD_BODY,
             responses={409: {"description": "The name is taken"}, 413: {"description": "The archive is too large"},
                        415: {"description": "Not a zip"}, 422: {"description": "Unusable archive or fields"},
                        429: {"description": "Another import is running"}})
async def add_dataset(request: Request, settings: SettingsDep, _creator: CreatorDep) -> ImportOut:
    """Import a zip of one folder per class as a data set every model can train on."""
    limit = settings.max_dataset_upload_bytes
    body = counted(request, limit, _too_large(limit))
    busy: asyncio.Lock | None = getattr(request.app.state, "import_lock", None)
    if busy is None:  # made on the event loop: one per app
        busy = request.app.state.import_lock = asyncio.Lock()
    if busy.locked():  # each import may hold 200 MB of pictures: one at a time
        raise HTTPException(429, "Another data set is being imported; try again when it is done.")
    async with busy:
        try:
            form = await body.form(max_files=1, max_fields=4)
        except TooLarge:
            raise _too_large(limit) from None
        except HTTPException:
            raise
        except Exception as exc:  # a malformed multipart body
            raise HTTPException(422, f"The upload could not be read as multipart/form-data ({exc}).") from None
        try:
            upload, name = form.get("file"), form.get("name")
            if not isinstance(upload, UploadFile):
                raise HTTPException(422, "No file was sent: put the zip in a multipart field named 'file'.")
            if not isinstance(name, str) or not name:
                raise HTTPException(422, "Give the data set a name (multipart field 'name', e.g. 'leaves').")
            size, channels = _int_field(form, "size"), _int_field(form, "channels")
            try:
                result = await run_in_threadpool(uploaded.import_images, upload.file, settings.data_dir, name,
                                                 size=size, channels=channels, label=upload.filename or "")
            except uploaded.ImportRefused as exc:
                raise HTTPException(STATUS.get(exc.reason, 422), str(exc)) from None
        finally:
            await form.close()
    imported(request.app).append(name)
    info = result.info
    return ImportOut(name=info.name, classes=list(info.classes), channels=info.channels, size=info.size,
                     train_count=info.train_count, test_count=info.test_count,
                     train_per_class=result.train_per_class, test_per_class=result.test_per_class,
                     skipped=result.skipped, skipped_examples=result.skipped_examples, examples=result.test_examples)


@router.delete("/api/datasets/{name}", status_code=204, response_class=Response,
               responses={404: {"description": "No such data set"},
                          409: {"description": "Shipped, or a live run trains on it"}})
async def delete_dataset(name: str, runs: ManagerDep, _creator: CreatorDep) -> Response:
    """Delete an imported data set; runs that trained on it keep their history (they can no longer train)."""
    try:
        info = get_info(name)
    except KeyError:
        raise HTTPException(404, f"There is no data set {name[:40]!r}; GET /api/datasets lists them.") from None
    if not uploaded.is_uploaded(name):
        raise HTTPException(409, f"{info.title} ships with filterscope and cannot be deleted.")
    live = [r.id for r in runs.runs() if not r.status.ended and getattr(r.config, "dataset", None) == name]
    if live:
        raise HTTPException(409, f"Run {', '.join(live[:5])} trains on {name!r}; stop it first, then delete the "
                                 "data set.")
    try:
        await run_in_threadpool(uploaded.remove, name)
    except KeyError:  # deleted by another request meanwhile
        raise HTTPException(404, f"There is no data set {name[:40]!r}.") from None
    return Response(status_code=204)
