"""The product's promise: the default run learns to 97 % and its first-layer filters visibly become detectors.

Slow (a full default run, several seconds) on purpose: this is what a newcomer sees when they press Start.
"""

from __future__ import annotations

import pytest

from filterscope.training.config import TrainConfig
from filterscope.training.engine import Engine, EpochSummary, Status
from filterscope.training.measures import layer_measures
from filterscope.training.snapshots import Snapshot
from tests.conftest import Recorder


@pytest.mark.slow
def test_the_default_run_turns_noise_into_smooth_filters_and_reaches_97_percent() -> None:
    # The defaults were tuned on seeds 0-5; a fixed thread count makes the run the same every time.
    rec = Recorder()
    engine = Engine(TrainConfig(seed=6), emit=rec, threads=2)
    engine.start()
    assert engine.join(300)
    assert engine.status is Status.FINISHED
    assert rec.of(EpochSummary)[-1].test_accuracy >= 0.97
    snaps = rec.of(Snapshot)
    start, end = snaps[0].layers[0], snaps[-1].layers[0]
    assert snaps[0].step == 0 and start.name == "conv1"
    before, after = layer_measures(start.weight, start.weight), layer_measures(end.weight, start.weight)
    assert abs(before.structure) < 0.2  # random noise at step 0
    assert after.cosine_to_start <= 0.40  # most of the random start is gone
    assert after.structure >= 0.45  # smooth strokes and edges
    assert end.measures == after  # what the page shows is what was measured here


@pytest.mark.slow
def test_classic_trains_on_shapes_color_with_the_defaults() -> None:
    """Every preset trains on every data set with the defaults: `classic` at tiny's Adam 5e-3 died on shapes-color
    (seed 1, one epoch: 12.9 %, chance for 8 classes); its own learning rate (PresetInfo.lr, 2e-3) gives 72.7 %."""
    config = TrainConfig(model="classic", dataset="shapes-color", seed=1, epochs=1)
    assert config.lr == 2e-3
    rec = Recorder()
    engine = Engine(config, emit=rec, threads=1)
    engine.start()
    assert engine.join(300)
    assert rec.of(EpochSummary)[-1].test_accuracy > 0.5
