"""Comparing runs: the compare page, every step of a run (losses and update ratios) for its curves, and one
layer's filters of two runs matched to each other, with whether each filter moved from its own random start."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from ..runs import Run, RunManager
from ..schemas import MatchOut, MatchSide, StepsOut
from ..streaming.codec import decode_frame
from ..training.matching import match_filters, moved_from
from .deps import ManagerDep, RunDep
from .pages import page_context, templates

router = APIRouter(tags=["compare"])


@router.get("/compare", response_class=HTMLResponse, include_in_schema=False)
def compare_page(request: Request) -> HTMLResponse:
    """Runs side by side: /compare?runs=ID,ID,ID (or ?sweep=ID)."""
    return templates.TemplateResponse(request, "compare.html", page_context())


@router.get("/api/runs/{run_id}/steps", responses={404: {"description": "Unknown run"}})
def steps(run: RunDep) -> StepsOut:
    """Every step's training loss and each conv layer's update ratio, oldest first."""
    steps, losses, ratios = run.record.step_history()
    return StepsOut(steps=steps, losses=losses, ratios=ratios)


def _weights(runs: RunManager, run: Run, layer: str, seq: int | None) -> tuple[object, int, int]:
    """The layer's weights at snapshot `seq` (the latest if None), with the snapshot's seq and step."""
    ref = run.record.find(seq)
    if ref is None:
        raise HTTPException(404, f"Run {run.id} has no snapshot {seq}." if seq is not None
                            else f"Run {run.id} has no snapshot yet.")
    found = runs.store.frame(run.id, ref.seq)
    if found is None:
        raise HTTPException(404, f"Run {run.id} has no snapshot {ref.seq}.")
    header, arrays = decode_frame(found[0])
    names = [entry["name"] for entry in header["layers"]]
    if layer not in names:
        raise HTTPException(404, f"Run {run.id} has no layer {layer[:40]!r}; its conv layers: {', '.join(names)}.")
    return arrays[f"layers.{names.index(layer)}.weight"], ref.seq, ref.step


@router.get("/api/compare/match", responses={404: {"description": "Unknown run, layer or snapshot"},
                                             422: {"description": "The layers differ in shape"}})
def match(runs: ManagerDep, a: str, b: str, layer: str = "conv1", seq_a: int | None = Query(None, ge=0),
          seq_b: int | None = Query(None, ge=0)) -> MatchOut:
    """Pair each filter of run A's `layer` (at snapshot `seq_a`, default its latest) with its counterpart in
    run B, by optimal assignment on the cosine similarity of their weights; a pair is one detector both runs
    learnt only if it is alike and each of its filters moved from its run's step 0 (runs of one seed start
    alike, so two that never learnt match perfectly)."""
    found = []
    for run_id in (a, b):
        run = runs.get(run_id)
        if run is None:
            raise HTTPException(404, f"There is no run {run_id[:40]}.")
        found.append(run)
    wa, sa, ta = _weights(runs, found[0], layer, seq_a)
    wb, sb, tb = _weights(runs, found[1], layer, seq_b)
    try:
        m = match_filters(wa, wb)  # type: ignore[arg-type]
    except ValueError as exc:
        raise HTTPException(422, f"{layer} of {a} and of {b} cannot be matched: {exc}; compare runs of one "
                                 "model and data set.") from None
    moved_a = moved_from(wa, _weights(runs, found[0], layer, 0)[0])  # type: ignore[arg-type]
    moved_b = moved_from(wb, _weights(runs, found[1], layer, 0)[0])  # type: ignore[arg-type]
    moved_b = [moved_b[j] for j in m.permutation]  # in A's order, as every list of the answer
    shared = [s and ma and mb for s, ma, mb in zip(m.shared, moved_a, moved_b, strict=True)]
    return MatchOut(layer=layer, a=MatchSide(run=a, seq=sa, step=ta), b=MatchSide(run=b, seq=sb, step=tb),
                    permutation=m.permutation, similarity=m.similarity, moved_a=moved_a, moved_b=moved_b,
                    shared=shared)
