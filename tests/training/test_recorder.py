"""What the loop records: snapshots on the dense-then-sparse cadence, update ratios that are ||ΔW|| / ||W|| as
worked by hand, every step's loss sent once, and a recorder restored from its state that goes on as if it never
stopped."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from filterscope.training.config import TrainConfig
from filterscope.training.data import normalise
from filterscope.training.datasets import get_dataset, get_info
from filterscope.training.events import StepsEvent
from filterscope.training.loop import TrainLoop
from filterscope.training.recorder import Ratios, Recorder, is_snapshot_step
from filterscope.training.snapshots import Probe, Snapshot

CPU = torch.device("cpu")


def probe(pixels: np.ndarray, index: int | None, label: int | None, source: str) -> Probe:
    info = get_info("mnist")
    return Probe(pixels, normalise(pixels, info).unsqueeze(0), index, label, source)


def probe_of(index: int) -> Probe:
    """Test image `index` as the probe, as the engine makes it."""
    data = get_dataset("mnist")
    return probe(data.x_test[index], index, int(data.y_test[index]), "test")


class Run:
    """A loop and its recorder, driven as the engine drives them; every event kept."""

    def __init__(self, loop: TrainLoop | None = None, **config: Any) -> None:
        cfg = TrainConfig(**{"dataset": "mnist", "model": "tiny", "batch_size": 16, "train_subset": 2000,
                             "snapshot_every": 20, **config})
        self.loop = loop or TrainLoop(cfg, get_info("mnist"), CPU)
        self.events: list[object] = []
        self.recorder = Recorder(self.loop, self.events.append, probe_of(0))
        self.losses: list[float] = []

    def train(self, steps: int) -> None:
        for _ in range(steps):
            loss = self.loop.train_batch()
            self.losses.append(loss)
            self.recorder.batch(loss, elapsed=0.0)
            if self.loop.epoch_complete:
                self.recorder.flush_steps()
                self.loop.end_epoch()
                self.recorder.snapshot(0.0, epoch_end=True)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def steps(self) -> tuple[list[int], list[float], dict[str, list[float]]]:
        """Every step, loss and update ratio sent so far, in order."""
        sent = self.of(StepsEvent)
        ratios = {name: [r for e in sent for r in e.ratios[name]] for name in ("conv1", "conv2")}
        return [s for e in sent for s in e.steps], [x for e in sent for x in e.losses], ratios


def test_the_cadence_is_every_batch_then_every_5_then_every_n() -> None:
    every = [s for s in range(1, 241) if is_snapshot_step(s, 20)]
    assert every == [*range(1, 11), *range(15, 101, 5), *range(120, 241, 20)]
    assert [s for s in range(101, 200) if is_snapshot_step(s, 7)] == list(range(105, 200, 7))
    assert all(is_snapshot_step(s, 1) for s in range(1, 300))


def test_snapshots_follow_the_cadence_and_each_epoch_ends_with_one() -> None:
    run = Run(batch_size=16, train_subset=1600, snapshot_every=30)  # 100 steps an epoch
    run.recorder.snapshot(0.0, epoch_end=False, refresh=True)  # step 0, as the engine takes it
    run.train(190)
    snaps: list[Snapshot] = run.of(Snapshot)
    expected = [0, *[s for s in range(1, 191) if is_snapshot_step(s, 30) and s != 100]]
    assert [s.step for s in snaps if not s.epoch_end] == expected
    assert [s.step for s in snaps if s.epoch_end] == [100]
    assert [s.seq for s in snaps] == list(range(len(snaps))) and run.recorder.last_seq == len(snaps) - 1


def test_update_ratios_are_the_step_size_over_the_weights_size_worked_by_hand() -> None:
    run = Run()
    layers = {"conv1": run.loop.model.conv1, "conv2": run.loop.model.conv2}
    by_hand: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(30):
        before = {name: m.weight.detach().double().clone() for name, m in layers.items()}
        run.train(1)
        for name, m in layers.items():
            step = m.weight.detach().double() - before[name]
            by_hand[name].append(float(step.norm() / before[name].norm()))
    run.recorder.flush_steps()
    steps, losses, ratios = run.steps()
    assert steps == list(range(1, 31)) and losses == run.losses
    for name in layers:
        np.testing.assert_allclose(ratios[name], by_hand[name], rtol=1e-4)
        assert all(r > 0 for r in ratios[name])  # every step moved every layer


def test_ratios_stay_right_when_a_parameters_storage_is_replaced() -> None:
    run = Run()
    run.train(3)
    conv1 = run.loop.model.conv1
    before = conv1.weight.detach().double().clone()
    conv1.weight.data = conv1.weight.detach().clone()  # same values, new memory (as .to() or a load may do)
    run.train(1)
    run.recorder.flush_steps()
    _, _, ratios = run.steps()
    by_hand = float((conv1.weight.detach().double() - before).norm() / before.norm())
    assert ratios["conv1"][-1] == pytest.approx(by_hand, rel=1e-4)


def test_every_loss_is_sent_once_in_order_at_least_every_25_steps() -> None:
    run = Run(snapshot_every=1000)  # no snapshot after step 100 to flush them: only the 25-step rule
    run.train(160)
    sent = run.of(StepsEvent)
    assert [s for e in sent for s in e.steps] == list(range(1, 151))  # 151-160 not yet: fewer than 25 pending
    assert [len(e.steps) for e in sent if e.steps[0] > 100] == [25, 25]
    run.recorder.flush_steps()
    steps, losses, _ = run.steps()
    assert steps == list(range(1, 161)) and losses == run.losses
    count = len(run.of(StepsEvent))
    run.recorder.flush_steps()  # nothing pending: nothing sent
    assert len(run.of(StepsEvent)) == count


def test_a_snapshot_holds_the_change_since_the_previous_one_and_the_mean_loss_in_between() -> None:
    run = Run(snapshot_every=1000)
    run.train(10)
    start = run.loop.model.conv2.weight.detach().clone()
    run.train(5)  # steps 11-15: the next snapshot is at 15
    snap = run.of(Snapshot)[-1]
    assert snap.step == 15 and snap.loss == pytest.approx(float(np.mean(run.losses[10:15])))
    conv2 = snap.layers[1]
    np.testing.assert_allclose(conv2.update, (run.loop.model.conv2.weight.detach() - start).numpy(), atol=1e-7)
    np.testing.assert_array_equal(conv2.weight, run.loop.model.conv2.weight.detach().numpy())
    fresh = run.recorder.snapshot(0.0, epoch_end=False, refresh=True)  # a new probe, no training in between
    assert not fresh.layers[1].update.any() and math.isnan(fresh.loss)  # nothing moved, no batch since step 15
    assert fresh.seq == snap.seq + 1
    run.train(5)
    after = run.of(Snapshot)[-1]
    assert after.step == 20 and after.loss == pytest.approx(float(np.mean(run.losses[15:20])))


def test_state_and_restore_go_on_as_if_it_never_stopped() -> None:
    config = {"augment": True, "seed": 2, "snapshot_every": 15}
    whole = Run(**config)
    whole.train(47)
    state = {"loop": whole.loop.state(), "recorder": whole.recorder.state()}
    sent_before = len(whole.events)
    whole.train(60)

    loop = TrainLoop.restore(whole.loop.config, whole.loop.info, CPU, state["loop"])
    resumed = Run(loop)
    resumed.recorder.restore(state["recorder"], probe)
    resumed.train(60)
    kept = whole.events[sent_before:]
    for kind in (StepsEvent, Snapshot):
        mine, theirs = resumed.of(kind), [e for e in kept if isinstance(e, kind)]
        assert len(mine) == len(theirs) > 0
        if kind is StepsEvent:
            assert [(e.steps, e.losses, e.ratios) for e in mine] == [(e.steps, e.losses, e.ratios) for e in theirs]
            continue
        for a, b in zip(mine, theirs, strict=True):
            assert (a.seq, a.step, a.loss, a.probe.index) == (b.seq, b.step, b.loss, b.probe.index)
            for la, lb in zip(a.layers, b.layers, strict=True):
                for key in ("weight", "update", "fmap", "start"):
                    np.testing.assert_array_equal(getattr(la, key), getattr(lb, key))
                assert la.peaks == lb.peaks


def test_a_snapshot_that_fails_still_sends_the_steps_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import filterscope.training.recorder as recorder

    run = Run(snapshot_every=1000)
    run.train(110)  # steps up to 100 went with the snapshot at 100; 101-110 wait

    def broken(*args: object, **kwargs: object) -> Snapshot:
        raise RuntimeError("a snapshot that cannot be taken")

    monkeypatch.setattr(recorder, "capture", broken)
    with pytest.raises(RuntimeError):
        run.recorder.snapshot(0.0, epoch_end=False)
    steps, losses, ratios = run.steps()
    assert steps == list(range(1, 111)) and losses == run.losses
    assert all(math.isfinite(r) and r > 0 for r in ratios["conv2"])


def test_with_every_layer_frozen_the_ratios_rings_are_reused_not_piled_up() -> None:
    run = Run(snapshot_every=1000, freeze=["conv1", "conv2"])
    run.train(100 + 25 * 12)  # twelve flushes past the dense start, their steps events never read
    sizes = run.recorder._sizes
    assert len(sizes._free) <= sizes.POOL  # each ring went back once diagnosed, read or not
    pending = [e.ratios for e in run.of(StepsEvent) if isinstance(e.ratios, Ratios)]
    assert len(pending) >= 12 and sum(r._ring is not None for r in pending) <= 2  # the newest, not yet diagnosed
