"""A run's history: the list of its snapshots, any snapshot's frame, one filter across all of them, and the
exports (the weights of every snapshot as .npz, a layer's filters as a GIF).

A trajectory or an export reads every frame of the run. Those of an ended run are made once and kept on disk
(record/exports_cache.py) and sent from there. Making one takes a slot of the low-priority export processes,
at most one per client and as many as there are processes in all, else the answer is 429 with Retry-After
(api/limits.py); the process reads the frames one at a time and writes the export to a file as it goes, so
memory holds a frame, not the run.

The measures of every snapshot (how far each layer has moved from its start) are read from the frames'
headers alone, a few KB of each, in a worker thread: cheap enough to answer at once, and kept for ended runs.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, BinaryIO

import anyio
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from ..record.export import NothingToExport, measures_json, sampled
from ..record.exports_cache import Export, make_export
from ..record.trajectory import NoSuchFilter
from ..runs import Run, RunManager
from ..schemas import SnapshotRef
from .deps import Exports, ExportsDep, FilterPath, ManagerDep, RunDep, SeqPath
from .errors import shown
from .limits import busy

router = APIRouter(prefix="/api/runs", tags=["history"])

BINARY: dict[str, Any] = {"content": {"application/octet-stream": {}}}
# A frame never changes once written (snapshot numbers are never reused, even across a resume).
IMMUTABLE = "public, max-age=31536000, immutable"
CHUNK = 256 * 1024  # bytes of an export read and sent at a time
BUSY: dict[int | str, dict[str, Any]] = {429: {
    "description": "As many exports are being made as the server allows, or one for this client (Retry-After "
                   "says when to ask again)"}, 503: {"description": "The process making it stopped; ask again"}}


def conv_layer(run: Run, layer: str) -> str:
    """`layer` if the run has a conv layer of that name, else 404 naming the ones it has."""
    names = [entry["name"] for entry in run.record.meta.get("layers", [])]
    if names and layer not in names:
        raise HTTPException(404, f"This run has no conv layer {shown(layer)!r}; its layers are {', '.join(names)}.")
    return layer


@router.get("/{run_id}/snapshots", responses={404: {"description": "Unknown run"}})
def snapshots(run: RunDep) -> list[SnapshotRef]:
    """Every snapshot of the run, oldest first."""
    return [SnapshotRef(seq=s.seq, step=s.step, epoch=s.epoch, epoch_end=s.epoch_end)
            for s in run.record.snapshot_list()]


@router.get("/{run_id}/snapshots/{seq}", response_class=Response,
            responses={200: BINARY, 304: {"description": "Not modified (If-None-Match)"},
                       404: {"description": "Unknown run or snapshot"}})
def snapshot_frame(run: RunDep, runs: ManagerDep, request: Request, seq: SeqPath) -> Response:
    """Snapshot `seq` as a binary frame, the same bytes as it was sent on the socket (docs/protocol.md)."""
    found = runs.store.frame(run.id, seq)
    if found is None:
        raise HTTPException(404, f"Run {run.id} has no snapshot {seq}; GET /api/runs/{run.id}/snapshots lists "
                                 "its snapshots.")
    frame, etag = found
    headers = {"ETag": f'"{etag}"', "Cache-Control": IMMUTABLE}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return Response(frame, media_type="application/octet-stream", headers=headers)


@router.get("/{run_id}/filters/{layer}/{index}", response_class=Response,
            responses={200: BINARY, 404: {"description": "Unknown run, layer or filter, or no snapshot yet"},
                       **BUSY})
async def filter_trajectory(run: RunDep, runs: ManagerDep, exports: ExportsDep, request: Request, layer: str,
                            index: FilterPath) -> Response:
    """One filter's W, dW and ΔW at every snapshot, in one binary frame (docs/protocol.md)."""
    try:
        return await send_export(run, runs, exports, request, Export("trajectory", conv_layer(run, layer), index),
                                 "application/octet-stream")
    except NoSuchFilter as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/{run_id}/measures", responses={200: {"content": {"application/json": {}}},
                                             404: {"description": "Unknown run, or no snapshot yet"}})
async def measures(run: RunDep, runs: ManagerDep, request: Request) -> Response:
    """How far each conv layer has moved from its start (step 0, or a fine-tuned run's pretrained weights),
    per snapshot: `{seq, step, epoch: [...], layers: {name: {moved, cosine_to_start, structure: [...]}}}`."""
    last = run.record.find(None)
    if last is None:
        raise HTTPException(404, "This run has no snapshot yet.")
    cache = _measures_cache(request)
    key = (run.id, last.seq)
    body = cache.get(key)
    if body is None:
        # The frames' headers only: ~0.1 ms a snapshot. Two at a time, so that no crowd of pages holds every
        # worker thread of the server.
        body = await anyio.to_thread.run_sync(lambda: measures_json(runs.store.headers(run.id)),
                                              limiter=cache.limiter)
        if run.status.ended:  # a live run's answer grows with every snapshot
            cache.put(key, body)
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-cache"})


class _Measures:
    """Ended runs' measures answers, the most recent few (a 1,000-snapshot run's is ~60 KB)."""

    KEEP = 16

    def __init__(self) -> None:
        self.kept: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self.limiter = anyio.CapacityLimiter(2)

    def get(self, key: tuple[str, int]) -> bytes | None:
        body = self.kept.get(key)
        if body is not None:
            self.kept.move_to_end(key)
        return body

    def put(self, key: tuple[str, int], body: bytes) -> None:
        self.kept[key] = body
        while len(self.kept) > self.KEEP:
            self.kept.popitem(last=False)


def _measures_cache(request: Request) -> _Measures:
    found: _Measures | None = getattr(request.app.state, "measures", None)
    if found is None:  # made on the event loop: one per app
        found = request.app.state.measures = _Measures()
    return found


@router.get("/{run_id}/export/filters.gif", response_class=Response,
            responses={200: {"content": {"image/gif": {}}}, 404: {"description": "Unknown run or layer"}, **BUSY})
async def export_gif(run: RunDep, runs: ManagerDep, exports: ExportsDep, request: Request,
                     layer: str = "conv1") -> Response:
    """An animated GIF of one conv layer's filters over the run (one frame per snapshot, at most 300)."""
    layer = conv_layer(run, layer)
    try:
        return await send_export(run, runs, exports, request, Export("gif", layer), "image/gif",
                                 attachment=f"{run.id}-{layer}.gif", sample=sampled)
    except NothingToExport as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/{run_id}/export/weights.npz", response_class=Response,
            responses={200: BINARY, 404: {"description": "Unknown run, or no snapshot yet"}, **BUSY})
async def export_npz(run: RunDep, runs: ManagerDep, exports: ExportsDep, request: Request) -> Response:
    """Every conv layer's weights at every snapshot: `{layer}.weight` (snapshots, out, in, kh, kw) float32,
    with `seq`, `step` and `epoch` per snapshot, as a NumPy .npz file."""
    try:
        return await send_export(run, runs, exports, request, Export("npz"), "application/octet-stream",
                                 attachment=f"{run.id}-weights.npz")
    except NothingToExport as exc:
        raise HTTPException(404, str(exc)) from None


async def send_export(run: Run, runs: RunManager, exports: Exports, request: Request, what: Export,
                      media_type: str, attachment: str | None = None,
                      sample: Callable[[int], list[int]] | None = None) -> Response:
    """Export `what` of the run, from its frames (those `sample` picks, if given): the kept file of an ended run,
    else made now under the limits (and kept if the run has ended)."""
    last = run.record.find(None)
    if last is None:
        raise HTTPException(404, "This run has no snapshot yet.")
    ended, key = run.status.ended, last.seq  # a resumed run's next snapshot moves the key on
    headers = {"Cache-Control": "no-cache"}
    if attachment is not None:
        headers["Content-Disposition"] = f'attachment; filename="{attachment}"'
    if ended:
        digest = hashlib.blake2b(f"{run.id}/{key}/{what.name}".encode(), digest_size=12).hexdigest()
        headers["ETag"] = f'"{digest}"'
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
    job = (run.id, key, what.name)
    for _ in range(2):  # a second look after waiting for another request's build of the same export
        kept = await run_in_threadpool(exports.cache.open, run.id, key, what.name) if ended else None
        if kept is not None:
            return _file_answer(kept, media_type, headers, exports)
        if not (ended and await exports.builds.joined(job)):
            break
    seqs = [ref.seq for ref in run.record.snapshot_list()]
    if sample is not None:
        seqs = [seqs[i] for i in sample(len(seqs))]
    make = functools.partial(make_export, runs.store.path, run.id, seqs, what, runs.data_dir,
                             exports.cache.max_bytes, key if ended else None)
    client = request.client.host if request.client else "?"
    try:
        path, is_kept = await exports.builds.run(client, job if ended else None, make,
                                                 discard=lambda made: None if made[1] else made[0].unlink())
    except BrokenProcessPool:  # its process was killed (out of memory?): the next request gets a new one
        raise HTTPException(503, "The process making this export stopped before it was done; ask again.") from None
    opened = await run_in_threadpool(_open_made, path, is_kept, exports, runs)
    return _file_answer(opened, media_type, headers, exports)


def _open_made(path: Path, kept: bool, exports: Exports, runs: RunManager) -> BinaryIO:
    """A made export, open; one not kept is removed from the disk (its data lasts until the file is closed)."""
    try:
        f = open(path, "rb")  # closed once sent
    except FileNotFoundError:  # kept, and evicted at once by another export: the cache is too small for both
        raise busy("The export was made but not kept (the exports' share of the disk budget is full); ask "
                   "again.") from None
    if kept:
        exports.cache.prune(runs.known())  # a run deleted while this was made takes it with it
    else:
        path.unlink()
    return f


def _file_answer(f: BinaryIO, media_type: str, headers: dict[str, str], exports: Exports) -> Response:
    """An open file's contents as the answer, read a chunk at a time at the exports' pace; the file is closed
    once sent."""
    size = os.fstat(f.fileno()).st_size

    async def chunks() -> AsyncIterator[bytes]:
        try:
            left = size
            while left > 0:
                await exports.pace.take(min(CHUNK, left))  # before reading: a waiting answer holds no chunk
                chunk = await run_in_threadpool(f.read, CHUNK)
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
        finally:
            f.close()

    return StreamingResponse(chunks(), media_type=media_type, headers={**headers, "Content-Length": str(size)})
