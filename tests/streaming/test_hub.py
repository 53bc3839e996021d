"""Fan-out: slow clients lose intermediate snapshots, never summaries; clean unsubscribe."""

from __future__ import annotations

import asyncio

import pytest

from filterscope.streaming.hub import Hub, Overflow


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def test_a_slow_subscriber_keeps_every_summary_and_the_newest_snapshots() -> None:
    async def scenario() -> list:
        hub = Hub(max_snapshots=2)
        async with hub.subscribe("r") as sub:
            for i in range(10):
                hub.publish("r", f"steps {i}")
                hub.publish("r", f"snap {i}".encode(), droppable=True)
            hub.publish("r", "epoch 1")
            got = [await sub.get() for _ in range(len(sub))]
            assert sub.dropped == 8
            return got

    got = run(scenario())
    assert [m for m in got if isinstance(m, str)] == [f"steps {i}" for i in range(10)] + ["epoch 1"]
    assert [m for m in got if isinstance(m, bytes)] == [b"snap 8", b"snap 9"]
    assert got.index(b"snap 9") < got.index("epoch 1")  # order is kept among what survives


def test_backlog_comes_first_and_subscribers_are_independent() -> None:
    async def scenario() -> None:
        hub = Hub()
        async with hub.subscribe("r", [("hello", False)]) as a, hub.subscribe("r") as b:
            assert hub.count("r") == 2
            hub.publish("r", "x")
            hub.publish("other", "y")
            assert [await a.get(), await a.get()] == ["hello", "x"]
            assert await b.get() == "x"
            assert len(b) == 0
        assert hub.count("r") == 0

    run(scenario())


def test_a_stuck_subscriber_is_cut_off_not_grown_forever() -> None:
    async def scenario() -> None:
        hub = Hub(max_messages=100)
        async with hub.subscribe("r") as sub:
            for i in range(150):
                hub.publish("r", f"steps {i}")
            assert sub.overflowed and len(sub) == 0
            with pytest.raises(Overflow):
                await sub.get()

    run(scenario())


def test_get_waits_for_the_next_message() -> None:
    async def scenario() -> str | bytes:
        hub = Hub()
        async with hub.subscribe("r") as sub:
            waiter = asyncio.create_task(sub.get())
            await asyncio.sleep(0.01)
            assert not waiter.done()
            hub.publish("r", "late")
            return await asyncio.wait_for(waiter, 1)

    assert run(scenario()) == "late"
