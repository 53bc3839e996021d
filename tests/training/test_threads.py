"""A run's thread count: chosen once and kept (so two runs of one seed are identical), recorded in its
checkpoints and restored from them, used again by replay; and the tuner that `adaptive` asks for, which keeps
whichever count trains faster and notices when the machine changes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from filterscope.config import Settings
from filterscope.training import checkpoints
from filterscope.training.config import TrainConfig
from filterscope.training.datasets import get_info
from filterscope.training.engine import CheckpointEvent, Engine, Event, StepsEvent
from filterscope.training.replay import state_at
from filterscope.training.snapshots import Snapshot
from filterscope.training.threads import ADAPTIVE, ThreadTuner, default_threads, run_threads

# 10 steps an epoch, 2 epochs: under a second.
CONFIG = TrainConfig(batch_size=32, train_subset=320, epochs=2, augment=True, seed=3, snapshot_every=5)


class Watch:
    """An engine's listener: every event, and the thread count its training thread had when it came."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.counts: set[int] = set()

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepsEvent | Snapshot):  # made by the training thread as it trains
            self.counts.add(torch.get_num_threads())
        self.events.append(event)

    def checkpoints(self, resumable: bool = True) -> list[CheckpointEvent]:
        return [e for e in self.events if isinstance(e, CheckpointEvent) and e.resumable is resumable]

    def final(self) -> dict[str, torch.Tensor]:
        return dict(self.checkpoints(resumable=False)[-1].state["loop"]["model"])


def train(threads: int | str = 0, checkpoint: dict[str, Any] | None = None, **kwargs: Any) -> tuple[Engine, Watch]:
    watch = Watch()
    engine = Engine(CONFIG, emit=watch, threads=threads, checkpoint=checkpoint, **kwargs)
    engine.start()
    assert engine.join(60)
    return engine, watch


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def main_thread_serial() -> Iterator[None]:
    """This thread on one torch thread, so that a count a run trains on can only come from the run."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_settings_name_each_policy() -> None:
    assert default_threads(2) == 1 and default_threads(8) == 7 and default_threads(1) == 1
    assert run_threads(0) == run_threads(None) == default_threads() and run_threads(3) == 3
    assert Settings(training_threads="adaptive").training_threads == ADAPTIVE
    assert run_threads(ADAPTIVE) == run_threads("adaptive") == "adaptive"
    with pytest.raises(ValueError, match="positive number"):
        run_threads(-2)


def test_by_default_a_run_keeps_one_count_and_two_runs_of_one_seed_are_identical() -> None:
    first, seen = train()
    assert first.threads == default_threads() and seen.counts == {default_threads()}  # never re-tuned
    second, again = train()
    assert same(seen.final(), again.final())  # bit for bit


def test_the_count_is_recorded_in_checkpoints_and_restored_from_them(main_thread_serial: None) -> None:
    count = 2 if default_threads() == 1 else 1  # anything but the default
    whole, seen = train(threads=count, checkpoint_seconds=1e-9)  # a checkpoint after every snapshot
    mid = next(c for c in seen.checkpoints() if 0 < c.step < whole.loop.total_steps - 5)
    state = checkpoints.load(checkpoints.save(mid.state))  # as the store keeps it
    assert state["threads"] == count
    resumed, again = train(threads=0, checkpoint=state)  # today's setting is the default: the run's count wins
    assert resumed.threads == count and again.counts == {count}
    assert same(again.final(), seen.final())  # and so it ends bit for bit where it would have
    older = {k: v for k, v in state.items() if k != "threads"}  # a checkpoint from before counts were kept
    assert Engine(CONFIG, threads=0, checkpoint=older).threads == default_threads()
    adaptive = Engine(CONFIG, threads=0, checkpoint={**state, "threads": "adaptive"})
    assert adaptive.threads == "adaptive"


def test_replay_trains_on_the_runs_count_whatever_the_calling_threads(main_thread_serial: None) -> None:
    count = 2  # replayed from a caller on one thread
    _, seen = train(threads=count)
    snaps = {e.step: e.state for e in seen.events if isinstance(e, Snapshot)}
    assert same(state_at(CONFIG, get_info(CONFIG.dataset), 15, None, {}, threads=count), snaps[15])
    assert torch.get_num_threads() == 1  # the replay's count stayed in its own thread


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(tuner: ThreadTuner, clock: Clock, speed: dict[int, float], batches: int) -> list[int]:
    """Feed `batches` batch times (seconds per batch at each thread count); the counts used, in order."""
    used = []
    for _ in range(batches):
        used.append(tuner.current)
        clock.now += speed[tuner.current]
        tuner.record(speed[tuner.current])
    return used


def test_it_keeps_the_faster_choice_and_checks_the_other_rarely() -> None:
    clock = Clock()
    tuner = ThreadTuner([2, 1], clock)
    used = drive(tuner, clock, {2: 0.004, 1: 0.006}, 2000)  # alone: two threads are faster
    assert tuner.current == 2
    assert used.count(1) / len(used) < 0.05


def test_it_moves_to_one_thread_when_a_core_gets_busy_and_back_when_it_frees() -> None:
    clock = Clock()
    tuner = ThreadTuner([2, 1], clock)
    drive(tuner, clock, {2: 0.004, 1: 0.006}, 500)
    assert tuner.current == 2
    # another program takes a core: two threads wait at every barrier
    busy = {2: 0.020, 1: 0.006}
    used = drive(tuner, clock, busy, 40)
    assert tuner.current == 1  # noticed within a few windows, not after the hold
    used = drive(tuner, clock, busy, 3000)
    assert used.count(2) / len(used) < 0.1
    # the core frees again: within the longest hold plus a round of trials, two threads are back
    drive(tuner, clock, {2: 0.004, 1: 0.006}, int(ThreadTuner.MAX_HOLD / 0.006) + 40)
    assert tuner.current == 2


def test_a_fixed_count_never_changes() -> None:
    clock = Clock()
    tuner = ThreadTuner([1], clock)
    assert set(drive(tuner, clock, {1: 0.01}, 100)) == {1} and tuner.trials == 0


def test_a_little_noise_does_not_cost_the_second_core() -> None:
    # a browser drawing now and then: two threads a little slower than alone, still faster than one
    clock = Clock()
    tuner = ThreadTuner([2, 1], clock)
    used = drive(tuner, clock, {2: 0.0055, 1: 0.006}, 2000)
    assert tuner.current == 2 and used.count(2) / len(used) > 0.9
