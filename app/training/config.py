"""The run configuration: every knob of a training run, with bounds a person can read.

The one truth for a run's settings: the API validates against TrainConfig, and the page renders its run
form from TrainConfig's JSON schema (labels from `title`, help from `description`, bounds, defaults and
choices), so the form, the API and the docs cannot disagree. Data sets and models are names looked up in
their registries when a config is validated, so one registered at run time is a choice like the shipped ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, Strict, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from . import datasets, models

# Fixed by the code (loop.OPTIMIZERS, the schedule in loop.py, models.INIT_SCALES), hence Literals; the page's
# name for each choice is said here, next to them (data sets and models carry their own titles).
OptimizerName = Literal["sgd", "momentum", "adam"]
ScheduleName = Literal["constant", "cosine"]
InitName = Literal["small-first", "small", "default"]
CHOICE_TITLES: dict[str, dict[str, str]] = {
    "optimizer": {"sgd": "SGD", "momentum": "Momentum", "adam": "Adam"},
    "lr_schedule": {"constant": "Constant", "cosine": "Cosine"},
    "init": {"small-first": "Small: 1st", "small": "Small: all", "default": "PyTorch default"},
}


def _alternatives(names: tuple[str, ...]) -> str:
    """'a', 'b' or 'c': how pydantic lists a Literal's choices in its messages."""
    quoted = [repr(n) for n in names]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]]) if len(quoted) > 1 else "".join(quoted) or "none"


@dataclass(frozen=True)
class Registered:
    """A name checked against a registry when a config is validated; the JSON schema lists the names
    registered when it is generated (as `enum`), so clients see the same choices the validation accepts."""

    kind: str  # what the registry holds, for the message: "data set"
    names: Callable[[], tuple[str, ...]]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["enum"] = list(self.names())
        return json_schema

    def check(self, name: str) -> str:
        """`name` if it is registered; else a 422 whose sentence lists the registered ones."""
        known = self.names()
        if name not in known:
            raise PydanticCustomError("unregistered", "Input should be a registered {kind}: {expected}",
                                      {"kind": self.kind, "expected": _alternatives(known)})
        return name


# Numbers as JSON has them: pydantic's lax mode reads `true` as 1 and "5" as 5, so {"lr": true} or {"epochs": true}
# started a run a person never asked for. Strict types refuse a bool or a string; a float field still takes an
# integer (`"lr": 1`), which JSON does not tell apart from 1.0.
Number = Annotated[float, Strict()]
Count = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]  # true or false, not 1 or "yes"

LayerName = Annotated[str, Field(min_length=1, max_length=64)]
DatasetName = Annotated[str, Registered("data set", datasets.names)]
ModelName = Annotated[str, Registered("model", models.names)]


class InitFrom(BaseModel):
    """Where a fine-tuned run starts: another stored run's weights at one of its snapshots."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", title="Run",
                     description="The id of the run whose weights this run starts from.")
    seq: Count | None = Field(None, ge=0, le=10_000_000, title="Snapshot",
                              description="Which of its snapshots (its number); empty for its latest.")


class TrainConfig(BaseModel):
    """One training run's settings; out-of-range values are rejected field by field."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dataset: DatasetName = Field("mnist", title="Data set", description="The images the network learns to "
                                 "classify.")
    model: ModelName = Field("tiny", title="Model", description="The network: its conv layers, their filters "
                             "and the dense layers after them.")
    optimizer: OptimizerName = Field("adam", title="Optimizer", description="How each step turns dL/dW into a "
                                     "change of W: plain SGD, SGD with momentum, or Adam.")
    # Adam at 5e-3 with cosine decay, small init and weight decay 3e-4: `tiny` reaches 97% on mnist in 5 epochs
    # for every seed tried (97.05-97.65%, seeds 0-5) and its conv1 filters end far from their random start
    # (cosine to step 0 at most 0.26) and smooth (lag-1 autocorrelation at least 0.50). See bench/bench_learning.py.
    lr: Number = Field(5e-3, gt=0, le=10, title="Learning rate", description="How far W moves against dL/dW "
                      "each step, before the schedule scales it; it can be changed while the run trains.")
    # Cosine decay to zero over the run: the last epochs refine instead of bouncing around the minimum.
    lr_schedule: ScheduleName = Field("cosine", title="LR schedule", description="How the learning rate "
                                      "evolves: constant, or decaying smoothly to zero over the run (cosine).")
    # 32 gives 250 steps per epoch on 8,000 images: enough snapshots to watch filters form.
    batch_size: Count = Field(32, ge=1, le=1024, title="Batch size", description="Training images averaged "
                            "into each step's gradient.")
    epochs: Count = Field(5, ge=1, le=100, title="Epochs", description="Passes over the training images.")
    # A little L2 wears away the noise of the random start that no gradient maintains: structure 0.34 -> 0.50.
    weight_decay: Number = Field(3e-4, ge=0, le=1, title="Weight decay", description="L2 penalty pulling "
                                "every weight towards zero at each step.")
    dropout: Number = Field(0.0, ge=0, lt=1, title="Dropout", description="Fraction of units dropped at random "
                           "before the classifier's last layer, while training.")
    init: InitName = Field("small-first", title="Initial weights", description="How big the random conv kernels "
                           "are before training: one tenth of PyTorch's default scale in the first conv layer "
                           "(the deeper ones at the default), one tenth in every conv layer, or the default "
                           "itself.")
    seed: Count = Field(0, ge=0, le=2**31 - 1, title="Seed", description="Same seed and settings, same numbers: "
                      "initial weights, the order of the images, dropout and augmentation.")
    # A snapshot costs the training thread about 1-2 ms (probe forward, copies, encoding). Every 20 batches
    # is ~12 snapshots/s for `tiny` on 2 cores: live to the eye, and ~2.5% of training time (every 10: ~5%).
    snapshot_every: Count = Field(20, ge=1, le=10_000, title="Snapshot every", description="Batches between "
                                "snapshots of the filters; one is also taken at every epoch's end.")
    # A few hundred images are memorised within a minute: train accuracy reaches 100 % while test accuracy
    # stalls, the gap that dropout, weight decay and augmentation narrow. None: the whole training set.
    train_subset: Count | None = Field(
        None, ge=10, le=1_000_000, title="Train subset",
        description="Train on only this many training images (the same ones, balanced over the classes, for "
                    "every seed) to watch the network overfit; empty for the whole training set.")
    augment: Flag = Field(False, title="Augment (random shifts)", description="Shift each training image, "
                          "every time it is drawn, by a random 0 to 2 pixels in each direction (edge pixels "
                          "repeated to fill in); shifts only, no flips.")
    # Transfer learning (transfer.py): the layers that fit are taken from the source, the others start random.
    init_from: InitFrom | None = Field(
        None, title="Start from", description="Another run's weights at one of its snapshots, instead of random "
        "ones: every layer whose shape fits is taken, the others (a classifier for other classes) start random.")
    freeze: tuple[LayerName, ...] = Field(
        (), max_length=32, title="Frozen layers", description="Layers (conv1, fc1, out, ...) whose weights stay "
        "as they start: the optimizer does not move them. Usually the first layers of a pretrained start.")
    probe_index: Count = Field(0, ge=0, title="Probe image", description="Index of the test image whose feature maps "
                             "are shown.")

    @model_validator(mode="before")
    @classmethod
    def _model_learning_rate(cls, data: Any) -> Any:
        """A config that names no learning rate and trains with Adam gets its model's (PresetInfo.lr: the schema's
        default is `tiny`'s); one that names a rate, or another optimizer, keeps what it says."""
        fields = cls.model_fields  # the defaults of the fields it reads, as declared above
        if isinstance(data, dict) and "lr" not in data and \
                data.get("optimizer", fields["optimizer"].default) == "adam":
            name = data.get("model", fields["model"].default)
            preset = models.PRESETS.get(name) if isinstance(name, str) else None
            if preset is not None:
                return {**data, "lr": preset.lr}
        return data
