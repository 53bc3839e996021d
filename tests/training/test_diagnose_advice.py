"""Advice never suggests what the run already uses: the initial weights it started from, or its learning rate."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from filterscope.training.diagnose import DEAD_STEPS, STALL_STEPS, Diagnosis, diverged

CHANCE = math.log(10)
DEAD = {"conv1": np.zeros((8, 1, 5, 5), np.float32)}  # every filter silent


def died(init: str | None) -> str:
    d = Diagnosis(10, "adam", init)
    for i in range(60):
        d.batch(i + 1, CHANCE, {"conv1": 1e-6}, 0.005)
    assert d.snapshot(10, DEAD, 0.005) == []
    (w,) = d.snapshot(10 + DEAD_STEPS, DEAD, 0.005)
    assert w.kind == "dead"
    return w.message


def test_a_dead_run_is_pointed_at_the_initial_weights_it_did_not_use() -> None:
    first = died("small-first")
    assert "PyTorch's default initial weights" in first and "small initial weights" not in first
    small = died("small")
    assert "in the first layer only" in small and "every layer" not in small
    default = died("default")
    assert "small initial weights in the first layer only" in default and "default initial weights" not in default
    unknown = died(None)  # a watched script's model: its init is not ours to name
    assert "initial weights" not in unknown and "a smaller learning rate than 0.005" in unknown


def test_a_stall_at_a_good_learning_rate_suggests_another_one() -> None:
    d = Diagnosis(10, "adam", "small-first")
    out = []
    for i in range(STALL_STEPS):
        out += d.batch(i + 1, CHANCE, {"conv1": 1e-3}, 0.005)  # moves (1e-3 a step) but does not learn
    (w,) = out
    assert w.kind == "stalled" and "try 0.0005 " in w.message and "try 0.005" not in w.message
    assert "PyTorch's default initial weights" in w.message


@pytest.mark.parametrize(("lr", "optimizer", "advice"), [(0.005, "adam", "try 0.0005)"), (1.0, "sgd", "try 0.1-0.3)"),
                                                         (0.0002, "adam", "try 2e-05)")])
def test_a_diverged_run_is_told_to_try_a_smaller_rate_than_its_own(lr: float, optimizer: str, advice: str) -> None:
    message = diverged(float("nan"), 7, 1, lr, optimizer)
    assert advice in message
    tried = [float(x) for x in re.split(r"(?<=\d)-", message.split("try ")[1].rstrip(").").strip())]
    assert all(x < lr for x in tried)
