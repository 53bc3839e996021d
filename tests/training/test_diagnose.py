"""Warnings that explain: each rule on constructed histories, and through real runs that a teacher would show
(SGD far too fast dies, far too slow stalls; the default run raises nothing)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from filterscope.training.config import TrainConfig
from filterscope.training.diagnose import DEAD_STEPS, STALL_STEPS, Diagnosis, WarningEvent
from filterscope.training.engine import Engine, StepsEvent
from tests.conftest import Recorder

CHANCE = math.log(10)


def feed(d: Diagnosis, losses: list[float], ratio: float, lr: float, first: int = 1) -> list[WarningEvent]:
    out: list[WarningEvent] = []
    for i, loss in enumerate(losses):
        out += d.batch(first + i, loss, {"conv1": ratio, "conv2": ratio}, lr)
    return out


def grads(dead: int, filters: int = 32) -> dict[str, np.ndarray]:
    g = np.full((filters, 8, 5, 5), 1e-3, np.float32)
    g[:dead] = 0
    return {"conv1": np.full((8, 1, 5, 5), 1e-3, np.float32), "conv2": g}


def test_a_loss_at_chance_with_tiny_steps_is_called_too_small_a_learning_rate() -> None:
    d = Diagnosis(10, "sgd")
    out = feed(d, [CHANCE] * (STALL_STEPS - 1), ratio=5e-7, lr=1e-5)
    assert out == []  # not before STALL_STEPS
    (w,) = feed(d, [CHANCE], ratio=5e-7, lr=1e-5, first=STALL_STEPS)
    assert (w.kind, w.step) == ("stalled", STALL_STEPS)
    assert "learning rate 1e-05 is too small for SGD" in w.message and "try 0.1-0.3" in w.message
    assert feed(d, [CHANCE] * 50, ratio=5e-7, lr=1e-5, first=STALL_STEPS + 1) == []  # once per run


def test_a_loss_that_falls_raises_nothing() -> None:
    d = Diagnosis(10, "adam")
    losses = [CHANCE * math.exp(-i / 30) + 0.05 for i in range(1000)]
    assert feed(d, losses, ratio=3e-3, lr=0.005) == []
    assert all(d.snapshot(s, grads(dead=10), 0.005) == [] for s in range(20, 1000, 20))


def test_a_stall_with_big_steps_is_called_overshooting() -> None:
    d = Diagnosis(10, "adam")
    (w,) = feed(d, [CHANCE + 0.01] * STALL_STEPS, ratio=5e-2, lr=0.05)
    assert w.kind == "stalled" and "too high for Adam" in w.message and "overshoots" in w.message


def test_a_loss_far_above_chance_is_exploding_and_names_the_learning_rate() -> None:
    d = Diagnosis(10, "sgd")
    assert feed(d, [CHANCE, 2.2, 2.5, 3.0], ratio=1e-2, lr=1.0) == []
    (w,) = feed(d, [8.0] * 10, ratio=1e-1, lr=1.0, first=5)
    assert w.kind == "exploding" and "learning rate 1 is too high for SGD" in w.message
    assert "at step" in w.message and str(w.step) in w.message


def test_a_layer_whose_filters_all_get_no_gradient_has_died() -> None:
    d = Diagnosis(10, "sgd")
    feed(d, [1.0] * 20, ratio=1e-3, lr=1.0)  # learning, not at chance: a silent majority is no death
    assert d.snapshot(20, grads(dead=31), 1.0) == [] and d.snapshot(20 + DEAD_STEPS, grads(dead=31), 1.0) == []
    assert d.snapshot(150, grads(dead=3), 1.0) == []  # alive again
    assert d.snapshot(200, grads(dead=32), 1.0) == []  # just died
    (w,) = d.snapshot(200 + DEAD_STEPS, grads(dead=32), 1.0)
    assert w.kind == "dead" and "32 of 32 filters of conv2" in w.message and "learning rate 1 is too high" in w.message


def test_most_filters_silent_is_death_only_while_the_loss_sits_at_chance() -> None:
    healthy = Diagnosis(10, "adam")
    feed(healthy, [0.3] * 60, ratio=1e-3, lr=0.005)
    assert [healthy.snapshot(s, grads(dead=20), 0.005) for s in range(10, 400, 10)] == [[]] * 39
    dying = Diagnosis(10, "adam")
    feed(dying, [CHANCE] * 60, ratio=1e-6, lr=0.005)
    found = [w for s in range(10, 400, 10) for w in dying.snapshot(s, grads(dead=20), 0.005)]
    assert [w.kind for w in found] == ["dead"] and found[0].step == 10 + DEAD_STEPS
    assert "a smaller learning rate than 0.005" in found[0].message  # 0.005 is not too high for Adam: no blame


def test_silence_that_ends_resets_the_clock() -> None:
    d = Diagnosis(10, "sgd")
    for s in range(10, 10 + 3 * DEAD_STEPS, 10):  # dead, then alive for one snapshot, every 50 steps
        assert d.snapshot(s, grads(dead=0 if s % 50 == 0 else 32), 1.0) == []


def run(**config: object) -> tuple[Engine, Recorder]:
    rec = Recorder()
    engine = Engine(TrainConfig(**config), emit=rec, threads=1)  # fixed threads: the same numbers every time
    engine.start()
    assert engine.join(180)
    return engine, rec


@pytest.mark.parametrize(("lr", "kinds", "says"), [(1.0, {"dead", "exploding"}, "learning rate 1 is too high for SGD"),
                                                    (1e-5, {"stalled"}, "learning rate 1e-05 is too small for SGD")])
def test_sgd_far_too_fast_or_too_slow_is_told_so_by_name(lr: float, kinds: set[str], says: str) -> None:
    engine, rec = run(optimizer="sgd", lr=lr, epochs=1)
    warnings = rec.of(WarningEvent)
    assert {w.kind for w in warnings} <= kinds and warnings, [w.message for w in warnings]
    assert all(says in w.message for w in warnings)
    assert len({w.kind for w in warnings}) == len(warnings)  # each kind once


@pytest.mark.slow
def test_the_default_run_raises_no_warning_and_its_steps_carry_update_ratios() -> None:
    engine, rec = run()
    assert rec.of(WarningEvent) == []
    assert engine.status.value == "finished"
    ratios = [r for e in rec.of(StepsEvent) for r in e.ratios["conv1"]]
    assert len(ratios) == engine.loop.total_steps and all(r > 0 for r in ratios)
    assert 1e-4 < float(np.median(ratios)) < 1e-1
