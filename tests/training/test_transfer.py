"""Transfer learning in the training code: a start taken from another model where its layers fit, the rest
from the seed, frozen layers that never move, and refusals that name the layer."""

from __future__ import annotations

import pytest
import torch

from filterscope.training.config import TrainConfig
from filterscope.training.datasets import get_info
from filterscope.training.engine import Engine
from filterscope.training.events import WarningEvent
from filterscope.training.loop import TrainLoop, fine_tune_start
from filterscope.training.plan import check
from filterscope.training.snapshots import Snapshot
from tests.conftest import Recorder

CPU = torch.device("cpu")
BASE = {"batch_size": 64, "epochs": 1, "train_subset": 640, "snapshot_every": 5}


def trained(config: TrainConfig, steps: int = 8) -> dict[str, torch.Tensor]:
    """A source: the model of `config` after a few steps, so that it differs from any seed's random start."""
    loop = TrainLoop(config, get_info(config.dataset), CPU)
    for _ in range(steps):
        loop.train_batch()
    return loop.model_state()


def test_a_start_of_the_same_model_takes_every_layer_and_the_run_begins_there() -> None:
    source = trained(TrainConfig(**BASE, seed=1))
    config = TrainConfig(**BASE, dataset="fashion-mnist", seed=2)
    start, fit = fine_tune_start(config, get_info(config.dataset), source, "run r1")
    assert fit.taken == ("conv1", "conv2", "fc1", "out") and fit.fresh == ()
    assert all(torch.equal(start[k], source[k]) for k in source)
    rec = Recorder()
    engine = Engine(config, emit=rec, threads=1, initial=start)
    engine.start()
    assert engine.join(60)
    first = rec.of(Snapshot)[0]
    assert first.step == 0 and all(torch.equal(first.state[k], source[k]) for k in source)
    assert not torch.equal(rec.of(Snapshot)[-1].state["conv1.weight"], source["conv1.weight"])  # and it trains


def test_layers_that_do_not_fit_start_from_the_seed_and_say_why() -> None:
    source = trained(TrainConfig(**BASE))  # mnist: 1 channel, 28 px, 10 classes
    shapes = TrainConfig(**BASE, dataset="shapes", seed=3)  # 8 classes: only the classifier's last layer differs
    start, fit = fine_tune_start(shapes, get_info("shapes"), source, "run r1")
    assert fit.taken == ("conv1", "conv2", "fc1")
    assert [(f.layer, f.reason) for f in fit.fresh] == [("out", "out.weight is 10×64 in run r1 and 8×64 here")]
    scratch = TrainLoop(shapes, get_info("shapes"), CPU).model_state()
    assert torch.equal(start["out.weight"], scratch["out.weight"])  # the seed's own random start
    assert torch.equal(start["conv2.weight"], source["conv2.weight"])

    colour = TrainConfig(**BASE, dataset="shapes-color")  # 3 channels and 32 px: conv1 and fc1 differ as well
    _, fit = fine_tune_start(colour, get_info("shapes-color"), source, "run r1")
    assert fit.taken == ("conv2",)
    assert [f.layer for f in fit.fresh] == ["conv1", "fc1", "out"]
    assert "conv1.weight is 8×1×5×5 in run r1 and 8×3×5×5 here" in fit.fresh[0].reason


def test_a_fine_tuned_run_sees_the_images_in_the_order_a_run_from_scratch_does() -> None:
    config = TrainConfig(**BASE, seed=5)
    start, _ = fine_tune_start(config, get_info("mnist"), trained(TrainConfig(**BASE)), "run r1")
    tuned, scratch = TrainLoop(config, get_info("mnist"), CPU, start), TrainLoop(config, get_info("mnist"), CPU)
    tuned.train_batch(), scratch.train_batch()
    assert torch.equal(tuned._order, scratch._order)  # type: ignore[arg-type]  # the same seed, the same images


def test_frozen_layers_stay_bit_identical_and_raise_no_warning() -> None:
    config = TrainConfig(**{**BASE, "epochs": 2}, freeze=("conv1", "conv2"))
    source = trained(TrainConfig(**BASE))
    start, _ = fine_tune_start(config, get_info("mnist"), source, "run r1")
    rec = Recorder()
    engine = Engine(config, emit=rec, threads=1, initial=start)
    engine.start()
    assert engine.join(60)
    snaps = rec.of(Snapshot)
    assert len(snaps) > 10
    for snap in snaps:
        for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
            assert torch.equal(snap.state[name], source[name]), (snap.step, name)
    last = snaps[-1].state
    assert not torch.equal(last["fc1.weight"], source["fc1.weight"]) and not torch.equal(last["out.bias"],
                                                                                         source["out.bias"])
    conv1 = next(layer for layer in snaps[-1].layers if layer.name == "conv1")
    assert abs(conv1.grad).max() > 0 and not conv1.update.any()  # what the loss asks of it is still shown
    assert rec.of(WarningEvent) == []


def test_freezing_what_cannot_be_frozen_is_refused_naming_the_layer() -> None:
    with pytest.raises(ValueError, match="'conv9', which is not a layer of this model; its layers are conv1, "
                                         "conv2, fc1, out"):
        check(TrainConfig(freeze=("conv9",)))
    with pytest.raises(ValueError, match="freeze names every layer"):
        check(TrainConfig(freeze=("conv1", "conv2", "fc1", "out")))
    source = trained(TrainConfig(**BASE))
    config = TrainConfig(**BASE, dataset="shapes", freeze=("out",))
    with pytest.raises(ValueError, match="out cannot be frozen: it does not fit the source"):
        fine_tune_start(config, get_info("shapes"), source, "run r1")
    lenet = TrainConfig(**BASE, model="lenet5")
    with pytest.raises(ValueError, match="Nothing of run r1 fits a lenet5 model for mnist: conv1.weight is "
                                         "8×1×5×5 in run r1 and 6×1×5×5 here"):
        fine_tune_start(lenet, get_info("mnist"), source, "run r1")
