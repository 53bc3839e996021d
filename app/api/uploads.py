"""Reading an uploaded image: the size limit enforced while the body streams in, then preprocessing off the loop
(on the lane of whoever sent it: api/limits.py)."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.types import Message

from ..config import Settings
from ..training.datasets import DatasetInfo
from ..training.preprocess import ImageRejected, Prepared, prepare
from .limits import Lanes

ACCEPTED = "PNG, JPEG, GIF, WebP, BMP or TIFF"
STATUS = {"empty": 422, "not_an_image": 415, "unsupported_format": 415, "too_many_pixels": 413,
          "truncated": 422, "corrupt": 422}
# Multipart boundaries and headers around the file; a body past limit + this is refused.
ENVELOPE = 64 * 1024

# For OpenAPI: the body the upload routes read by hand (so the size limit applies while it streams in).
UPLOAD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary", "description": f"an image: {ACCEPTED}"}},
}}}}}


class TooLarge(Exception):
    """A `counted` request's body passed its limit while it was read."""


def counted(request: Request, limit: int, refusal: HTTPException) -> Request:
    """`request` with its body counted as it is read: `refusal` (a 413) at once when Content-Length says more
    than `limit` plus the multipart envelope, TooLarge from the read as soon as more than that has arrived."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + ENVELOPE:
        raise refusal  # refused before a byte of the body is read
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit + ENVELOPE:
            raise TooLarge
        return message

    return Request(request.scope, receive)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"The file is larger than {limit / 1024 / 1024:g} MB, the most this server accepts; "
                              f"upload a smaller {ACCEPTED} image.")


async def read_upload(request: Request, settings: Settings) -> bytes:
    """The bytes of multipart field `file`; 413 as soon as the body passes the limit, 422 if there is no file."""
    limit = settings.max_upload_bytes
    body = counted(request, limit, _too_large(limit))
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(422, f"Send the image as multipart/form-data in a field named 'file' ({ACCEPTED}).")
    try:
        form = await body.form(max_files=1, max_fields=4)
    except TooLarge:
        raise _too_large(limit) from None
    except HTTPException:  # the guard's answer to a body that stalled (408)
        raise
    except Exception as exc:  # a malformed multipart body
        raise HTTPException(422, f"The upload could not be read as multipart/form-data ({exc}); send the image "
                                 f"in a field named 'file'.") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, f"No file was sent: put the image in a multipart field named 'file' ({ACCEPTED}).")
        if upload.size is not None and upload.size > limit:
            raise _too_large(limit)
        return await upload.read()
    finally:
        await form.close()


def decode(data: bytes, info: DatasetInfo, settings: Settings) -> Prepared:
    """The image decoded and shaped for `info` (blocking: call it on a lane); a bad file is a 4xx with its reason."""
    try:
        return prepare(data, info, max_pixels=settings.max_image_pixels)
    except ImageRejected as exc:
        raise HTTPException(STATUS[exc.reason], str(exc)) from None


async def prepare_upload(data: bytes, info: DatasetInfo, settings: Settings, lanes: Lanes) -> Prepared:
    """The owner's upload decoded and shaped for `info` on their lane (429 if it holds as many as it may)."""
    return await lanes.run(lanes.owner, None, lambda: decode(data, info, settings))
