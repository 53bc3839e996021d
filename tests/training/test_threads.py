"""The thread tuner: it keeps whichever thread count trains faster, and notices when the machine changes."""

from __future__ import annotations

from app.training.threads import ThreadTuner


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
