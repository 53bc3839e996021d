"""The typed edges of the HTTP API: requests and answers (docs/protocol.md tells the story)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .training.config import TrainConfig
from .training.events import Status
from .watching.config import WatchedConfig

RunConfig = TrainConfig  # the run config travels as is: one definition, in the training package
# A run's config as answered: a built-in preset's, or what a person's script under `filterscope.watch` said of
# its own model (source "watch").
AnyRunConfig = Annotated[TrainConfig | WatchedConfig, Field(union_mode="left_to_right")]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    storage: str | None = Field(None, description="why the server cannot save anything now (disk full, data "
                                "directory read-only or deleted); null while it can")


class DatasetOut(BaseModel):
    """A data set as the page lists it."""

    name: str
    title: str
    description: str
    classes: list[str]
    channels: int
    size: int
    kind: str
    licence: str
    train_count: int
    test_count: int
    source: Literal["shipped", "uploaded"] = "shipped"  # uploaded: a person's own folder, DELETE removes it


class LabelsOut(BaseModel):
    """A data set's class names and the class of each test image (an index into `classes`)."""

    classes: list[str]
    test: list[int]


class PoolOut(BaseModel):
    kind: Literal["max", "avg"]
    size: int
    stride: int


class ModelLayerOut(BaseModel):
    name: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    pool: PoolOut | None = Field(None, description="the pooling that follows this layer's ReLU, if any")


class ModelOut(BaseModel):
    """A model preset, with its conv layers for 1-channel 28x28 input."""

    name: str
    title: str
    description: str
    parameters: int
    layers: list[ModelLayerOut]
    freezable: list[str] = Field(description="its layers with parameters, in order: the names `freeze` takes")
    lr: float = Field(description="the learning rate a run of it gets when its config names none (with Adam)")


class SampledOut(BaseModel):
    filters: int = Field(description="the layer's filters, of which the first `out_channels` are recorded")
    channels: int = Field(description="its input channels, of which the first `in_channels` are recorded")


class ConvOut(BaseModel):
    groups: int
    stride: tuple[int, int]
    dilation: tuple[int, int]


class LayerOut(ModelLayerOut):
    fmap: tuple[int, int, int] = Field(description="(C, H, W) of this layer's feature maps for one image")
    sampled: SampledOut | None = Field(None, description="a watched model's deep layer recorded in part, within "
                                       "the snapshot byte budget: how big it really is")
    conv: ConvOut | None = Field(None, description="grouping, stride and dilation, where not 1")


class EpochOut(BaseModel):
    epoch: int
    step: int
    train_loss: float | None
    test_loss: float | None
    test_accuracy: float | None
    lr: float
    wall_time: float
    train_accuracy: float | None = Field(None, description="accuracy on a fixed sample of the training images "
                                         "(as many as the test set has), in eval mode like test_accuracy")


class WarningOut(BaseModel):
    kind: Literal["dead", "stalled", "exploding"]
    step: int = Field(description="the step it was raised at")
    message: str = Field(description="what happened, its likely cause and what to try, in one sentence")


class LrChangeOut(BaseModel):
    step: int = Field(description="the step after which the new rate applied")
    lr: float


class FreshOut(BaseModel):
    layer: str
    reason: str = Field(description="why it starts random: e.g. `out.weight is 10×64 in run r1 and 4×64 here`")


class TransferOut(BaseModel):
    """Where a fine-tuned run (`init_from`) started, and what it took from there."""

    run: str = Field(description="the source run (it may have been deleted since: the start is kept here)")
    seq: int
    step: int
    model: str = Field(description="the source's model and data set")
    dataset: str
    taken: list[str] = Field(description="layers that start with the source's weights")
    fresh: list[FreshOut] = Field(description="layers that did not fit and start random, with why")
    frozen: list[str] = Field(description="layers the optimizer does not move (the config's `freeze`)")


class RunOut(BaseModel):
    """A run: its config, where it is, and its history of epoch summaries."""

    id: str
    status: Status
    message: str | None = Field(description="why the run diverged, failed or was interrupted")
    config: AnyRunConfig
    created_at: float
    epoch: int = Field(description="completed epochs")
    step: int = Field(description="optimizer steps done")
    steps_per_epoch: int
    total_steps: int
    samples_seen: int
    elapsed: float = Field(description="seconds of training, pauses excluded")
    instrument_seconds: float = Field(description="of `elapsed`, the seconds the training thread spent on "
                                      "filterscope's own work: taking, encoding and sending snapshots and losses")
    analysis_seconds: float = Field(0.0, description="training-thread seconds spent on the filter analyses (top "
                                    "patches and health, at step 0 and every epoch end): their cost")
    analyses: list[int] = Field(default_factory=list, description="seqs of the snapshots that have a filter "
                                "analysis (GET /api/runs/{id}/snapshots/{seq}/top/{layer})")
    lr: float = Field(description="current learning rate")
    watchers: int = Field(description="WebSocket clients watching now")
    layers: list[LayerOut]
    classes: list[str]
    history: list[EpochOut]
    snapshots: int = Field(description="snapshots kept (GET /api/runs/{id}/snapshots lists them)")
    bytes: int = Field(description="what the run takes on disk")
    warnings: list[WarningOut] = Field(default_factory=list, description="raised so far, once per kind")
    queue_position: int | None = Field(None, description="while `queued` behind the runs that hold every "
                                       "training slot: its place in line (1 = next to start)")
    lr_changes: list[LrChangeOut] = Field(default_factory=list, description="learning rates set by hand")
    skipped_snapshots: int = Field(0, description="intermediate snapshots not kept because the store fell behind "
                                   "(never step 0, an epoch end, a loss or a status)")
    kind: Literal["local", "ray", "process", "watch"] = Field(
        "local", description="who trains it: `local`, a thread of this server; `ray`, an actor on the server's "
        "Ray cluster (`serve --ray`); `process`, another process (`filterscope train`); `watch`, a person's own "
        "script and model (`filterscope.watch`)")
    worker: dict[str, Any] | None = Field(None, description="while a `ray` run trains: where, "
                                          "{node, ip, pid}")
    capabilities: dict[str, bool] = Field(default_factory=dict, description="what the server can do with it: "
                                          "controllable, resumable, replayable, inspectable")
    producer: dict[str, Any] | None = Field(None, description="while another process trains it: {pid, what}")
    transfer: TransferOut | None = Field(None, description="a fine-tuned run's start (`init_from`)")
    shipped: str | None = Field(None, description="a run that came with filterscope, added to a new data "
                                "directory (`pretrained`: scripts/pretrain.py), not started by anyone here")


class CreatedRunOut(RunOut):
    """A new run, with the token that controls it (given only in this answer)."""

    token: str = Field(description="send as Authorization: Bearer <token> to pause, resume, step, stop, or "
                       "change the learning rate or the probe")


class LrPatch(BaseModel):
    """A new learning rate for a live run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    lr: float = Field(gt=0, le=10)


class ProbeIndex(BaseModel):
    """A test-set image to use as the probe."""

    model_config = ConfigDict(extra="forbid")
    index: int = Field(ge=0)


class SnapshotRef(BaseModel):
    seq: int
    step: int
    epoch: int
    epoch_end: bool


class FeatureMapsOut(BaseModel):
    """One layer's feature maps, u8-encoded as in snapshot frames, bytes in base64."""

    name: str
    shape: list[int]
    dtype: Literal["u8"] = "u8"
    lo: list[float]
    hi: list[float]
    data: str


class InputOut(BaseModel):
    shape: list[int]
    inverted: bool = Field(description="dark-on-light input was inverted to match the training data")
    original_size: tuple[int, int] = Field(description="(width, height) after EXIF rotation")
    colour: bool = Field(False, description="the upload has colour, and the model sees it in grey (a model of "
                         "one channel); false for a colour model")
    png: str = Field(description="the preprocessed input as the model saw it, base64 PNG")


class PredictionOut(BaseModel):
    index: int
    name: str
    probabilities: list[float]


class InspectOut(BaseModel):
    """What the model, as it was at one snapshot, makes of an uploaded image."""

    snapshot: SnapshotRef
    input: InputOut
    prediction: PredictionOut
    classes: list[str]
    layers: list[FeatureMapsOut]


SWEEP_MAX = 8  # runs in one sweep: a comparison a person can still read, and half the queue


class SweepIn(BaseModel):
    """A base config and one field to vary: one run per value."""

    model_config = ConfigDict(extra="forbid")
    base: RunConfig = Field(default_factory=RunConfig, description="every field optional: {} for the defaults")
    vary: dict[str, list[Any]] = Field(description='exactly one config field and its values, e.g. '
                                       '{"lr": [0.0005, 0.005, 0.05]}: 2 to 8 values')


class SweepOut(BaseModel):
    """A sweep and its runs, in the order of its values."""

    id: str
    created_at: float
    field: str
    values: list[Any]
    base: RunConfig
    runs: list[RunOut] = Field(description="one per value, in order (a run deleted since is left out)")


class CreatedSweepOut(SweepOut):
    runs: list[CreatedRunOut]  # type: ignore[assignment]  # with each run's control token, given only here


class StepsOut(BaseModel):
    """Every step's training loss and each conv layer's update ratio, as the socket's backlog carries them."""

    steps: list[int]
    losses: list[float | None]
    ratios: dict[str, list[float | None]]


class MatchSide(BaseModel):
    run: str
    seq: int
    step: int


class MatchOut(BaseModel):
    """Run B's filters paired with run A's by optimal assignment on the cosine similarity of their weights."""

    layer: str
    a: MatchSide
    b: MatchSide
    permutation: list[int] = Field(description="for each filter i of A, the filter of B that matches it")
    similarity: list[float] = Field(description="cosine similarity of each pair (1: the same kernel)")
    moved_a: list[bool] = Field(description="whether A's filter i moved from A's step 0 (cosine with it below 0.9)")
    moved_b: list[bool] = Field(description="whether B's filter permutation[i] moved from B's step 0")
    shared: list[bool] = Field(description="one detector both learnt: alike (cosine >= 0.8) and both filters moved")


class PatchOut(BaseModel):
    """One of a filter's top test-set patches."""

    index: int = Field(description="the test image: GET /api/datasets/{name}/test/{index}.png")
    box: tuple[int, int, int, int] = Field(description="(y0, x0, y1, x1) in input pixels, ends exclusive: the "
                                           "receptive field of the strongest response, clipped at the border")
    activation: float = Field(description="the filter's (post-activation) response there")


class TopFilterOut(BaseModel):
    """One filter: its top patches, best first, on distinct images (only those with a positive response)."""

    filter: int
    dead: bool = Field(description="no positive response anywhere on the test set")
    positive: float = Field(description="share of its responses above zero (every position of every 4th test image)")
    duplicate_of: int | None = Field(description="the most similar other filter of the layer, if their weights' "
                                     "cosine similarity is above 0.95")
    similarity: float = Field(description="cosine similarity of its weights to the most similar other filter")
    patches: list[PatchOut]


class TopLayerOut(BaseModel):
    """What each filter of one conv layer detects at one snapshot."""

    layer: str
    seq: int
    step: int
    epoch: int
    receptive_field: int = Field(description="side of a position's receptive field in input pixels")
    dead: int = Field(description="dead filters in the layer")
    duplicates: int = Field(description="filters with a near-duplicate in the layer")
    filters: list[TopFilterOut]
