"""Request-side heavy work runs on one low-priority thread, so it cannot take the training thread's cores."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from filterscope.background import NICENESS, in_background


def where_and_how_nice() -> tuple[int, int]:
    return threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is a Linux feature")
def test_uploads_run_on_one_thread_at_lowered_priority() -> None:
    async def main() -> list[tuple[int, int]]:
        return list(await asyncio.gather(*(in_background(where_and_how_nice) for _ in range(4))))

    results = asyncio.run(main())
    assert len({tid for tid, _ in results}) == 1  # one worker: two uploads never take both cores
    assert all(nice >= NICENESS for _, nice in results)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < NICENESS  # this thread is untouched
