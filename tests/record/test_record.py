"""The run record: what a producer hands it is stored before it is published, numbered without gaps; a
second process's record, read back through Store.tail, publishes exactly what the producer's published;
learning rates set by hand and statuses no producer reports reach every client."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from filterscope.record.lease import FileLock, run_lease
from filterscope.record.record import Message, RunRecord, new_stored_run
from filterscope.record.store import Store
from filterscope.training.events import (
    EpochSummary,
    FrameEvent,
    Status,
    StatusEvent,
    StepsEvent,
    WarningEvent,
)

META: dict[str, Any] = {"config": {"lr": 0.01}, "layers": [{"name": "conv1"}, {"name": "conv2"}]}


class Published:
    """What a record publishes: (message, droppable, number), in order, from the writer thread."""

    def __init__(self) -> None:
        self.items: list[tuple[Message, bool, int]] = []
        self.lock = threading.Lock()

    def __call__(self, message: Message, droppable: bool, n: int) -> None:
        with self.lock:
            self.items.append((message, droppable, n))

    def texts(self) -> list[dict[str, Any]]:
        return [json.loads(m) for m, _, _ in self.items if isinstance(m, str)]


def new_run(tmp_path: Path) -> tuple[Store, RunRecord]:
    """A store at tmp_path and the record of a new run r1 in it."""
    store = Store(tmp_path / "runs.db")
    stored = new_stored_run("r1", "-", META, 0.01)
    store.add_run(stored)
    return store, RunRecord(stored, store)


def frame(seq: int, step: int) -> FrameEvent:
    body = f"frame {seq}".encode()
    return FrameEvent(seq=seq, step=step, epoch=0, epoch_end=False, samples_seen=step * 32, elapsed=step / 10,
                      instrument_seconds=0.0, frame=lambda: body, model={"w": np.full(3, seq, np.float32)})


def produce(record: RunRecord) -> None:
    """A short run's events, as a producer hands them over."""
    record.on_event(StatusEvent(Status.RUNNING, None, 0, 0, 0.01))
    record.on_event(frame(0, 0))
    # Losses as a float32 tensor's .item() gives them (the store keeps float32): 2.25 and 2.125 are exact.
    record.on_event(StepsEvent([1, 2], [2.25, 2.125], {"conv1": [1e-3, 2e-3], "conv2": [3e-3, 4e-3]}))
    record.on_event(frame(1, 2))
    record.on_event(StatusEvent(Status.RUNNING, None, 0, 2, 0.001))  # a learning rate set by hand after step 2
    record.on_event(WarningEvent("stalled", 2, "slow"))
    record.on_event(WarningEvent("stalled", 2, "slow again"))  # once per kind
    record.on_event(EpochSummary(1, 2, 2.2, 2.1, 0.3, 0.001, 0.2))
    record.on_event(frame(2, 2))
    record.on_event(StatusEvent(Status.FINISHED, None, 1, 2, 0.001))


def test_what_a_record_publishes_is_stored_first_numbered_without_gaps(tmp_path: Path) -> None:
    store, record = new_run(tmp_path)
    published = Published()
    stored_when_published: list[bool] = []

    def publish(message: Message, droppable: bool, n: int) -> None:
        if isinstance(message, bytes):  # on disk before anyone is sent it
            found = store.frame("r1", int(message.split()[1]))
            stored_when_published.append(found is not None and found[0] == message)
        published(message, droppable, n)

    record.publish = publish
    produce(record)
    assert store.flush()
    numbers = [n for _, _, n in published.items]
    assert numbers == list(range(1, len(numbers) + 1))
    assert stored_when_published == [True, True, True]
    kinds = [json.loads(m)["type"] if isinstance(m, str) else "snapshot" for m, _, _ in published.items]
    assert kinds.count("warning") == 1 and kinds.count("snapshot") == 3
    assert [d for m, d, _ in published.items if isinstance(m, bytes)] == [False, True, True]  # the first stays
    statuses = [t for t in published.texts() if t["type"] == "status"]
    assert statuses[-1]["lr_changes"] == [{"step": 2, "lr": 0.001}] == \
        [{"step": s, "lr": lr} for s, lr in record.lr_changes().items()]
    assert record.status == "finished" and record.recent_state(1) is None  # an ended run keeps its last model only
    np.testing.assert_array_equal(record.recent_state(2)["w"], np.full(3, 2, np.float32))  # type: ignore[index]
    store.close()


def test_a_follower_publishes_what_the_producer_published(tmp_path: Path) -> None:
    producer_store, producer = new_run(tmp_path)
    mine = Published()
    producer.publish = mine

    follower_store = Store(tmp_path / "runs.db")  # another connection, as another process has
    assert producer_store.flush()
    [seen] = follower_store.load_runs({"r1"})
    follower = RunRecord(seen, follower_store)
    theirs = Published()
    follower.publish = theirs
    produce(producer)
    assert producer_store.flush()
    tail = follower_store.tail("r1", *follower.marks())
    assert tail is not None
    follower.follow(tail)
    # The same frames, steps, epochs and messages, in kind and content (the follower reads them per kind).
    assert sorted(m for m, _, _ in theirs.items if isinstance(m, bytes)) == \
        sorted(m for m, _, _ in mine.items if isinstance(m, bytes))
    same = lambda p: sorted(json.dumps(t, sort_keys=True) for t in p.texts() if t["type"] != "analysis")  # noqa: E731
    assert same(theirs) == same(mine)
    assert follower.state == producer.state and follower.epochs == producer.epochs
    assert follower.step_history() == producer.step_history()
    again = follower_store.tail("r1", *follower.marks())
    assert again is not None and not (again.frames or again.steps or again.events)  # nothing read twice
    count = len(theirs.items)
    follower.follow(again)
    assert len(theirs.items) == count
    producer_store.close()
    follower_store.close()


def test_a_status_no_producer_reports_is_stored_and_published(tmp_path: Path) -> None:
    store, record = new_run(tmp_path)
    published = Published()
    ended: list[Status] = []
    record.publish, record.on_status = published, ended.append
    record.set_status(Status.FAILED, "This run could not start: it is broken.")
    assert store.flush()
    [status] = published.texts()
    assert status["status"] == "failed" and status["message"] == "This run could not start: it is broken."
    assert ended == [Status.FAILED] and record.status == "failed"
    store.close()
    [again] = Store(tmp_path / "runs.db").load_runs()
    assert again.state["status"] == "failed" and again.events[-1]["message"].startswith("This run could not")


def test_a_lease_is_one_holder_at_a_time_and_free_once_given_back(tmp_path: Path) -> None:
    first, second = run_lease(tmp_path, "r1"), run_lease(tmp_path, "r1")
    assert first.is_free() and first.acquire(what="a test")
    assert not second.is_free() and not second.acquire()  # another holder, even in this process
    assert second.holder()["what"] == "a test"
    first.release()
    assert second.is_free() and second.acquire()
    second.release()
    assert FileLock(tmp_path / "never").is_free()


def test_when_the_store_falls_behind_intermediate_snapshots_are_skipped_and_counted(tmp_path: Path) -> None:
    store, record = new_run(tmp_path)
    gate = threading.Event()

    def slow(seq: int, step: int, epoch_end: bool = False) -> FrameEvent:
        def encode() -> bytes:
            gate.wait(20)  # the writer is stuck on this frame: everything after it waits in the queue
            return f"frame {seq}".encode()
        return FrameEvent(seq=seq, step=step, epoch=int(epoch_end), epoch_end=epoch_end, samples_seen=0,
                          elapsed=0.0, instrument_seconds=0.0, frame=encode)

    record.on_event(slow(0, 0))
    for seq in range(1, RunRecord.MAX_BEHIND + 4):  # more than the store may have queued
        record.on_event(slow(seq, seq * 5))
    record.on_event(slow(99, 500, epoch_end=True))  # an epoch end is never skipped
    record.on_event(StatusEvent(Status.FINISHED, None, 1, 500, 0.01))
    gate.set()
    assert store.flush()
    kept = [ref.seq for ref in record.snapshot_list()]
    intermediate = len(kept) - 2
    assert kept[0] == 0 and kept[-1] == 99 and RunRecord.MAX_BEHIND - 1 <= intermediate <= RunRecord.MAX_BEHIND
    skipped = RunRecord.MAX_BEHIND + 3 - intermediate  # every one not kept is counted
    assert record.skipped == skipped >= 3 and record.state["skipped_snapshots"] == skipped
    assert record.status == "finished"
    store.close()
    [again] = Store(tmp_path / "runs.db").load_runs()
    assert again.state["skipped_snapshots"] == skipped and len(again.snapshots) == len(kept)


def test_a_run_of_one_snapshot_read_from_disk_sends_it_once_to_a_joining_client(tmp_path: Path) -> None:
    """Its first frame is its latest: two reads of it (load_frames) are still one frame in the backlog (a late
    socket of a followed run was sent snapshot 0 twice)."""
    store, record = new_run(tmp_path)
    record.on_event(StatusEvent(Status.RUNNING, None, 0, 0, 0.01))
    record.on_event(frame(0, 0))
    assert store.flush()
    (stored,) = store.load_runs()
    again = RunRecord(stored, store)  # as a server that follows the run, or restarted, holds it
    again.load_frames()
    backlog, _ = again.backlog({"id": "r1"})
    frames = [m for m, _ in backlog if isinstance(m, bytes)]
    assert frames == [b"frame 0"]
    store.close()
