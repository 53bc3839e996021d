"""Who waits behind whom for an image through a model: the owner never behind a viewer, a viewer's recent moment
never behind old moments being rebuilt, and past each viewer bound a 429 with Retry-After (api/limits.py).

A lane is held by real work queued on it ahead of the requests (a job waiting on an Event), as the export tests
hold the export processes; every request that might wait runs in a thread with a timeout, so a request that
waits where it should not fails the test instead of hanging it."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from PIL import Image

from filterscope import background
from filterscope.api.inspect import needs_replay
from filterscope.api.limits import (
    REBUILD_JOBS,
    REBUILD_RETRY_SECONDS,
    RETRY_SECONDS,
    VIEWER_JOBS,
    WORKED_ASKED,
    WORKED_PER_CLIENT,
)
from tests.api.conftest import SMALL, LocalClient, OwnerClient, owner_client, start_run, wait_status
from tests.conftest import wait_for

PROMPT = 30  # seconds: far more than any answer here takes, far less than forever (a held lane is forever)


def image() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (28, 28), 0).save(buf, format="PNG")
    return buf.getvalue()


def inspect(client: LocalClient, run_id: str, seq: int | None = None) -> Any:
    query = "" if seq is None else f"?snapshot={seq}"
    return client.post(f"/api/runs/{run_id}/inspect{query}", files={"file": ("a.png", image(), "image/png")})


@contextmanager
def held(*lanes: background.Lane) -> Iterator[None]:
    """Each lane busy with a job that waits until the block ends (the work queued behind it waits too)."""
    gate = threading.Event()
    jobs = [lane.submit(gate.wait) for lane in lanes]
    try:
        yield
    finally:
        gate.set()
        for job in jobs:
            job.result(timeout=PROMPT)


def jobs(owner: OwnerClient, lane: background.Lane) -> int:
    """How many jobs the owner's app has admitted to `lane` (none before its first image)."""
    lanes = getattr(owner.app.state, "lanes", None)
    return 0 if lanes is None else int(lanes.jobs(lane))


def viewer(owner: OwnerClient, n: int) -> LocalClient:
    """A viewer of the owner's app at an address of its own (no control token)."""
    return LocalClient(owner.app, client=(f"10.0.1.{n}", 5000))


def test_the_owner_and_a_recent_moment_never_wait_behind_viewers_and_past_the_bounds_it_is_429() -> None:
    with owner_client() as owner, ThreadPoolExecutor(12) as pool:
        run = wait_status(owner, start_run(owner, **SMALL)["id"], "finished")
        runs, rid = owner.app.state.runs, run["id"]
        snaps = owner.get(f"/api/runs/{rid}/snapshots").json()
        old = [s["seq"] for s in snaps[1:6]]
        found = runs.get(rid)
        assert all(needs_replay(runs, found, found.record.find(seq)) for seq in old)  # the lanes' premise
        assert not needs_replay(runs, found, found.record.find(None))  # the latest is kept in memory
        later: list[Future[Any]] = []

        def asked(fn: Callable[..., Any], *args: Any) -> Future[Any]:
            done = pool.submit(fn, *args)
            later.append(done)
            return done

        with held(background.rebuilds):
            queued = [asked(inspect, viewer(owner, i), rid, old[i]) for i in range(REBUILD_JOBS)]
            wait_for(lambda: jobs(owner, background.rebuilds) == REBUILD_JOBS)
            res = inspect(viewer(owner, 50), rid, old[REBUILD_JOBS])  # one more old moment, from anyone
            assert res.status_code == 429 and res.headers["retry-after"] == str(REBUILD_RETRY_SECONDS)
            assert f"{REBUILD_JOBS} older moments are being rebuilt" in res.json()["detail"]
            res = inspect(viewer(owner, 0), rid)  # a viewer already waiting asks again
            assert res.status_code == 429 and "still being worked on" in res.json()["detail"]
            recent = asked(inspect, viewer(owner, 51), rid).result(timeout=PROMPT)  # never behind a rebuild
            assert recent.status_code == 200 and recent.json()["snapshot"]["seq"] == snaps[-1]["seq"]
            mine = asked(inspect, owner, rid, old[-1]).result(timeout=PROMPT)  # an old moment, replayed for the owner
            assert mine.status_code == 200 and mine.json()["snapshot"]["seq"] == old[-1]
            assert not any(f.done() for f in queued)  # the viewers' old moments still wait

        with held(background.viewers, background.rebuilds):  # every viewer lane busy
            waiting = [asked(inspect, viewer(owner, 100 + i), rid) for i in range(VIEWER_JOBS)]
            wait_for(lambda: jobs(owner, background.viewers) == VIEWER_JOBS)
            res = inspect(viewer(owner, 150), rid)
            assert res.status_code == 429 and res.headers["retry-after"] == str(RETRY_SECONDS)
            assert f"{VIEWER_JOBS} images are being worked on for other viewers" in res.json()["detail"]
            for seq in (None, old[0]):
                mine = asked(inspect, owner, rid, seq).result(timeout=PROMPT)
                assert mine.status_code == 200, mine.text
            assert not any(f.done() for f in waiting)

        assert [f.result(timeout=PROMPT).status_code for f in queued + waiting] == [200] * (REBUILD_JOBS + VIEWER_JOBS)
        assert [jobs(owner, lane) for lane in (background.viewers, background.rebuilds, background.owner)] == [0] * 3
        assert inspect(viewer(owner, 50), rid, old[REBUILD_JOBS]).status_code == 200  # its turn now


def test_an_owners_probe_upload_never_waits_behind_viewers() -> None:
    with owner_client() as owner, ThreadPoolExecutor(4) as pool:
        run = start_run(owner, epochs=20)
        wait_for(lambda: owner.get(f"/api/runs/{run['id']}").json()["snapshots"] >= 1)
        with held(background.viewers, background.rebuilds):
            waiting = pool.submit(inspect, viewer(owner, 1), run["id"])
            wait_for(lambda: jobs(owner, background.viewers) == 1)
            res = pool.submit(owner.post, f"/api/runs/{run['id']}/probe",
                              files={"file": ("d.png", image(), "image/png")}).result(timeout=PROMPT)
            assert res.status_code == 200, res.text
            assert not waiting.done()
        assert waiting.result(timeout=PROMPT).status_code == 200
        owner.post(f"/api/runs/{run['id']}/stop")


def test_worked_numbers_wait_their_turn_within_bounds_and_the_owners_never_wait_behind_viewers() -> None:
    """The kernel inspector's worked numbers (a replayed step, a forward pass) from anyone used to queue without
    bound on the rebuild lane; now a viewer's run WORKED_PER_CLIENT at a time within the lane's bound, the rest
    wait their turn (a page is not refused for asking as a person clicks), more than WORKED_ASKED asked at once
    by one address are refused, the same moment asked twice is worked out once, and the owner's go on their
    own lane."""
    with owner_client() as owner, ThreadPoolExecutor(16) as pool:
        run = wait_status(owner, start_run(owner, **SMALL)["id"], "finished")
        rid = run["id"]
        seqs = [s["seq"] for s in owner.get(f"/api/runs/{rid}/snapshots").json()[2:14]]

        def update(client: LocalClient, seq: int) -> Any:
            return client.get(f"/api/runs/{rid}/snapshots/{seq}/update/conv1/0")

        with held(background.rebuilds):
            someone = viewer(owner, 7)
            mine = [pool.submit(update, someone, seq) for seq in seqs[:WORKED_ASKED]]
            again = pool.submit(update, someone, seqs[0])  # the same step: waits for the one being made
            wait_for(lambda: jobs(owner, background.rebuilds) == WORKED_PER_CLIENT)
            # all eight counted as asked (on a loaded machine the last may not have arrived yet)
            wait_for(lambda: owner.app.state.lanes.asked("10.0.1.7") == WORKED_ASKED)
            res = update(someone, seqs[WORKED_ASKED])  # one more than may be asked at once
            assert res.status_code == 429 and "waiting already" in res.json()["detail"]
            other = pool.submit(update, viewer(owner, 8), seqs[-1])  # the lane is full (REBUILD_JOBS): it waits
            owners = pool.submit(update, owner, seqs[-2]).result(timeout=PROMPT)  # the owner's lane
            assert owners.status_code == 200 and owners.json()["snapshot"]["seq"] == seqs[-2]
            assert jobs(owner, background.rebuilds) == WORKED_PER_CLIENT  # the rest wait, holding no place
            assert not any(f.done() for f in [*mine, again, other])
        answers = [f.result(timeout=PROMPT) for f in [*mine, again, other]]
        assert [a.status_code for a in answers] == [200] * (WORKED_ASKED + 2)
        assert answers[WORKED_ASKED].json() == answers[0].json()
        assert jobs(owner, background.rebuilds) == 0
