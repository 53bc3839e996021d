"""The training engine: states, controls, determinism, divergence, and what its snapshots hold."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from filterscope.training.config import TrainConfig
from filterscope.training.datasets import get_dataset
from filterscope.training.engine import Engine, EpochSummary, ErrorEvent, StateError, Status, StatusEvent, StepsEvent
from filterscope.training.recorder import is_snapshot_step
from filterscope.training.snapshots import Snapshot
from tests.conftest import Recorder, wait_for

FAST = {"dataset": "mnist", "model": "tiny", "batch_size": 64, "epochs": 1}


def statuses(rec: Recorder) -> list[Status]:
    return [e.status for e in rec.of(StatusEvent)]


@pytest.fixture(scope="module")
def finished() -> tuple[Engine, Recorder]:
    """One complete 1-epoch run of `tiny` on mnist, shared by the tests that only read it."""
    rec = Recorder()
    engine = Engine(TrainConfig(**FAST, snapshot_every=10), emit=rec)
    engine.start()
    assert engine.join(120)
    return engine, rec


def test_a_run_goes_from_running_to_finished_and_learns(finished: tuple[Engine, Recorder]) -> None:
    engine, rec = finished
    assert engine.status is Status.FINISHED and engine.message is None
    assert statuses(rec) == [Status.RUNNING, Status.FINISHED]
    assert engine.step_count == engine.loop.steps_per_epoch == 125
    history = rec.of(EpochSummary)
    assert [h.epoch for h in history] == [1]
    assert history[0].test_accuracy > 0.9
    losses = [x for e in rec.of(StepsEvent) for x in e.losses]
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])  # the loss falls


def test_every_step_is_reported_once_in_order(finished: tuple[Engine, Recorder]) -> None:
    engine, rec = finished
    steps = [s for e in rec.of(StepsEvent) for s in e.steps]
    assert steps == list(range(1, 126))
    assert all(math.isfinite(x) for e in rec.of(StepsEvent) for x in e.losses)


def test_snapshots_hold_weights_gradients_updates_and_feature_maps(finished: tuple[Engine, Recorder]) -> None:
    engine, rec = finished
    snaps: list[Snapshot] = rec.of(Snapshot)
    # step 0, every batch up to 10, every 5 up to 100, then every 10 batches, and the end of the epoch (125)
    assert [s.step for s in snaps] == [0, *range(1, 11), *range(15, 101, 5), 110, 120, 125]
    assert [s for s in range(1, 200) if is_snapshot_step(s, 20)][-6:] == [90, 95, 100, 120, 140, 160, 180][-6:]
    assert [s.seq for s in snaps] == list(range(len(snaps)))
    assert [s.epoch_end for s in snaps] == [False] * (len(snaps) - 1) + [True]
    geometry = {x.name: x for x in engine.layers}
    for prev, snap in zip(snaps, snaps[1:], strict=False):
        assert math.isfinite(snap.loss)
        assert snap.probs.shape == (10,) and abs(float(snap.probs.sum()) - 1) < 1e-5
        for before, layer in zip(prev.layers, snap.layers, strict=True):
            g = geometry[layer.name]
            assert layer.weight.shape == (g.out_channels, g.in_channels, *g.kernel)
            assert layer.grad.shape == layer.update.shape == layer.weight.shape
            assert layer.fmap.shape == g.fmap
            np.testing.assert_array_equal(layer.fmap, np.maximum(layer.preact, 0))  # the ReLU of the conv's output
            assert np.abs(layer.grad).max() > 0
            np.testing.assert_allclose(layer.update, layer.weight - before.weight, atol=1e-6)
    assert all(np.all(layer.update == 0) for layer in snaps[0].layers)
    assert snaps[-1].probe.index == 0 and snaps[-1].probe.label == int(get_dataset("mnist").y_test[0])


def losses(rec: Recorder) -> list[float]:
    return [x for e in rec.of(StepsEvent) for x in e.losses]


def snapshot_at_step_15(seed: int) -> tuple[Engine, Recorder, Snapshot]:
    rec = Recorder()
    # A fixed thread count: with `auto` the order of floating-point sums follows the machine's load.
    engine = Engine(TrainConfig(**FAST, seed=seed, snapshot_every=15, dropout=0.3, augment=True), emit=rec,
                    threads=2)
    engine.step()  # train to the next snapshot (steps 1-10 each have one, then 15), then pause
    engine.start()
    for done in range(1, 12):
        wait_for(lambda done=done: engine.status is Status.PAUSED and len(rec.of(Snapshot)) == done + 1)
        if done < 11:
            engine.step()
    return engine, rec, rec.of(Snapshot)[-1]


def test_same_seed_same_numbers_even_with_runs_beside_it() -> None:
    a, rec_a, snap_a = snapshot_at_step_15(7)
    b, rec_b, snap_b = snapshot_at_step_15(7)  # `a` is still alive (paused) beside it
    c, rec_c, snap_c = snapshot_at_step_15(8)
    assert snap_a.step == snap_b.step == 15
    assert losses(rec_a) == losses(rec_b)
    for la, lb, lc in zip(snap_a.layers, snap_b.layers, snap_c.layers, strict=True):
        assert np.array_equal(la.weight, lb.weight) and np.array_equal(la.fmap, lb.fmap)
        assert not np.array_equal(la.weight, lc.weight)
    assert losses(rec_a) != losses(rec_c)
    for engine in (a, b, c):
        engine.stop()
        assert engine.join(10)


def test_the_engine_accounts_for_the_time_its_own_work_takes() -> None:
    """instrument_seconds is what the bench and the API report as filterscope's share of training time."""
    snaps = 0

    def slow_listener(event: object) -> None:
        nonlocal snaps
        if isinstance(event, Snapshot):
            snaps += 1
            time.sleep(0.01)  # a listener that takes 10 ms per snapshot

    engine = Engine(TrainConfig(**FAST, snapshot_every=25, train_subset=1600), emit=slow_listener)  # 25 steps
    engine.start()
    assert engine.join(120)
    assert snaps == 14  # step 0, steps 1-10, 15, 20, and the epoch end (25)
    # The untrained network's snapshot comes before the training clock starts; the other 13 are in it.
    assert 0.01 * 13 <= engine.instrument_seconds < engine.elapsed


def test_pause_really_pauses_and_resume_goes_on() -> None:
    rec = Recorder()
    engine = Engine(TrainConfig(**FAST, snapshot_every=1), emit=rec)  # every batch in flight ends in a snapshot
    engine.start()
    wait_for(lambda: engine.step_count >= 5)
    engine.pause()  # returns once the training thread has stopped
    assert engine.status is Status.PAUSED
    held, emitted = engine.step_count, len(rec.events)
    last = rec.events[-1]  # `paused` is the last word
    assert isinstance(last, StatusEvent) and (last.status, last.step, last.lr) == (Status.PAUSED, held, engine.lr)
    time.sleep(0.5)
    assert engine.step_count == held
    assert len(rec.events) == emitted  # nothing after `paused`, not even a snapshot of the batch in flight
    elapsed = engine.elapsed
    time.sleep(0.2)
    assert engine.elapsed == pytest.approx(elapsed)  # paused time is not training time
    engine.resume()
    wait_for(lambda: engine.step_count > held + 5)
    assert statuses(rec)[:3] == [Status.RUNNING, Status.PAUSED, Status.RUNNING]
    engine.stop()
    assert engine.join(10)


def test_step_trains_to_the_next_snapshot_then_pauses() -> None:
    rec = Recorder()
    engine = Engine(TrainConfig(**FAST, snapshot_every=7), emit=rec)
    engine.pause()  # paused before it starts: nothing trains
    engine.start()
    wait_for(lambda: len(rec.of(Snapshot)) == 1)  # the step-0 snapshot
    time.sleep(0.2)
    assert engine.step_count == 0
    engine.step()
    wait_for(lambda: engine.status is Status.PAUSED and engine.step_count == 1)  # dense at the start
    engine.step()
    wait_for(lambda: engine.step_count == 2 and engine.status is Status.PAUSED)
    time.sleep(0.2)
    assert engine.step_count == 2
    assert [s.step for s in rec.of(Snapshot)] == [0, 1, 2]
    engine.stop()
    assert engine.join(10)
    assert engine.status is Status.STOPPED


def test_stop_ends_the_run_and_keeps_its_history() -> None:
    rec = Recorder()
    engine = Engine(TrainConfig(**{**FAST, "epochs": 3}), emit=rec)
    engine.start()
    wait_for(lambda: engine.epoch == 1)
    engine.stop()
    assert engine.join(10)
    assert engine.status is Status.STOPPED
    assert engine.epoch == 1 and engine.step_count >= 125
    assert statuses(rec)[-1] is Status.STOPPED


def test_controls_that_do_not_apply_are_refused() -> None:
    engine = Engine(TrainConfig(**FAST))
    with pytest.raises(StateError, match="paused"):
        engine.resume()
    engine.start()
    wait_for(lambda: engine.status is Status.RUNNING)
    with pytest.raises(StateError):
        engine.resume()
    engine.pause()
    with pytest.raises(StateError):
        engine.pause()
    engine.stop()
    engine.join(10)
    for control in (engine.pause, engine.resume, engine.step, engine.stop):
        with pytest.raises(StateError):
            control()
    with pytest.raises(StateError):
        engine.set_lr(0.1)


def test_a_nan_loss_ends_the_run_as_diverged_with_a_reason() -> None:
    rec = Recorder()
    engine = Engine(TrainConfig(**FAST, optimizer="sgd", lr=10.0), emit=rec)
    with torch.no_grad():  # what a too-large step does to a weight, without waiting for it
        engine.loop.model.conv1.weight[0, 0, 0, 0] = float("inf")
    engine.start()
    assert engine.join(60)
    assert engine.status is Status.DIVERGED
    assert engine.message is not None and "learning rate 10" in engine.message
    assert [e.message for e in rec.of(ErrorEvent)] == [engine.message]
    assert statuses(rec)[-1] is Status.DIVERGED


def test_an_exception_in_training_fails_the_run_without_killing_the_process() -> None:
    rec = Recorder()
    engine = Engine(TrainConfig(**FAST), emit=rec)

    def broken(*_: object) -> torch.Tensor:
        raise RuntimeError("out of kernels")

    engine.loop.model.forward = broken  # type: ignore[method-assign]
    engine.start()
    assert engine.join(30)
    assert engine.status is Status.FAILED
    assert "RuntimeError: out of kernels" in (engine.message or "")
    assert rec.of(ErrorEvent)


def test_learning_rate_changes_from_the_next_batch() -> None:
    rec = Recorder()
    engine = Engine(TrainConfig(**FAST, lr_schedule="constant"), emit=rec)
    engine.start()
    wait_for(lambda: engine.step_count > 3)
    engine.set_lr(0.0005)
    wait_for(lambda: any(e.lr == 0.0005 for e in rec.of(StatusEvent)))
    # The batches after it train with the new rate: the next snapshots say so.
    wait_for(lambda: any(s.lr == 0.0005 for s in rec.of(Snapshot)))
    with pytest.raises(ValueError):
        engine.set_lr(-1)
    engine.stop()
    engine.join(10)


def test_the_cosine_schedule_decays_the_rate_to_zero(finished: tuple[Engine, Recorder]) -> None:
    engine, rec = finished
    assert engine.config.lr_schedule == "cosine"
    snaps = rec.of(Snapshot)
    rates = [s.lr for s in snaps]
    assert rates[0] == pytest.approx(engine.config.lr)
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    assert rates[-1] < 0.01 * engine.config.lr


def test_a_new_probe_gets_a_fresh_snapshot_even_while_paused() -> None:
    rec = Recorder()
    engine = Engine(TrainConfig(**FAST), emit=rec)
    engine.start()
    wait_for(lambda: engine.step_count > 3)
    engine.pause()
    wait_for(lambda: len(rec.of(Snapshot)) >= 1)
    time.sleep(0.1)
    before = len(rec.of(Snapshot))
    engine.set_probe_index(42)
    wait_for(lambda: len(rec.of(Snapshot)) == before + 1)
    fresh = rec.of(Snapshot)[-1]
    assert fresh.probe.index == 42 and engine.status is Status.PAUSED
    pixels = np.zeros((1, 28, 28), np.uint8)
    pixels[0, 5:20, 12:15] = 255
    engine.set_probe_pixels(pixels)
    wait_for(lambda: len(rec.of(Snapshot)) == before + 2)
    assert rec.of(Snapshot)[-1].probe.source == "upload"
    with pytest.raises(ValueError, match="out of range"):
        engine.set_probe_index(2000)
    engine.stop()
    engine.join(10)


def test_a_probe_index_outside_the_test_set_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="2000 images"):
        Engine(TrainConfig(**FAST, probe_index=5000))
