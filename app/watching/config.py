"""What a watched run is: a person's own model trained by their own script, described for the page (torch-free)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class WatchedConfig(BaseModel):
    """A run recorded by `filterscope.watch` from a person's training script: what the script told it and what
    it could see. The server cannot rebuild, resume or replay such a run; it shows what was recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["watch"] = "watch"
    name: str = Field(max_length=200, description="the name the script gave the run (default: the model's class)")
    model: str = Field(max_length=200, description="the model's class, e.g. ResNet")
    dataset: str = Field("own data", max_length=200, description="where its images are: `run:<id>`, kept with the "
                         "run (GET /api/runs/{id}/images.u8) when the script gave images=; else `own data`")
    optimizer: str | None = Field(None, max_length=200, description="the optimizer's class, when one was given")
    lr: float | None = Field(None, description="the optimizer's first learning rate, when one was given")
    epochs: int | None = Field(None, description="epochs the script said it will train, if it said")
    input: list[int] = Field(description="(C, H, W) of one input image, the probe's")
    snapshot_every: int = Field(description="optimizer steps between snapshots after the dense start")
    budget: int = Field(description="bytes a snapshot may take; deeper layers beyond it are sampled")
    compiled: bool = Field(False, description="the model was torch.compile'd: recorded from its original module")
