"""The run configuration: every knob of a training run, with bounds a person can read."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DatasetName = Literal["mnist", "fashion-mnist", "shapes", "shapes-color"]
ModelName = Literal["tiny", "lenet5", "classic"]
OptimizerName = Literal["sgd", "momentum", "adam"]


class TrainConfig(BaseModel):
    """One training run's settings; out-of-range values are rejected field by field."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dataset: DatasetName = "mnist"
    model: ModelName = "tiny"
    optimizer: OptimizerName = "adam"
    # Adam at 5e-3 with cosine decay, small init and weight decay 3e-4: `tiny` reaches 97% on mnist in 5 epochs
    # for every seed tried (97.05-97.65%, seeds 0-5) and its conv1 filters end far from their random start
    # (cosine to step 0 at most 0.26) and smooth (lag-1 autocorrelation at least 0.50). See bench/bench_learning.py.
    lr: float = Field(5e-3, gt=0, le=10, description="Learning rate: how far W moves against dL/dW each step.")
    # 32 gives 250 steps per epoch on 8,000 images: enough snapshots to watch filters form.
    # Cosine decay to zero over the run: the last epochs refine instead of bouncing around the minimum.
    lr_schedule: Literal["constant", "cosine"] = Field("cosine", description="How the learning rate evolves.")
    batch_size: int = Field(32, ge=1, le=1024)
    epochs: int = Field(5, ge=1, le=100)
    # A little L2 wears away the noise of the random start that no gradient maintains: structure 0.34 -> 0.50.
    weight_decay: float = Field(3e-4, ge=0, le=1, description="L2 penalty pulling every weight towards zero.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the classifier's last layer.")
    augment: bool = Field(False, description="Random shifts of up to 2 px (and flips for shapes).")
    # A few hundred images are memorised within a minute: train accuracy reaches 100 % while test accuracy
    # stalls, the gap that dropout, weight decay and augmentation narrow. None: the whole training set.
    train_subset: int | None = Field(
        None, ge=10, le=1_000_000,
        description="Train on only this many training images (the same ones, balanced over the classes, for "
                    "every seed), to watch the network overfit; empty for the whole training set.")
    init: Literal["default", "small"] = Field(
        "small", description="Initial conv weights: PyTorch's default random scale, or one tenth of it.")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    # A snapshot costs the training thread about 1-2 ms (probe forward, copies, encoding). Every 20 batches
    # is ~12 snapshots/s for `tiny` on 2 cores: live to the eye, and ~2.5% of training time (every 10: ~5%).
    snapshot_every: int = Field(20, ge=1, le=10_000, description="Batches between snapshots.")
    probe_index: int = Field(0, ge=0, description="Index of the test image whose feature maps are shown.")
