"""Server settings, read once from the environment (prefix FILTERSCOPE_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the server; a test builds its app with its own (`create_app(Settings(...))`)."""

    model_config = SettingsConfigDict(env_prefix="FILTERSCOPE_")

    # Two cores here: two runs training at once already share them; a third would only slow all three.
    max_active_runs: int = Field(2, ge=1)
    # torch threads per new training run, kept from its first step to its last and recorded with it (resume and
    # replay use the run's own count), so that a resumed run ends bit for bit where it would have and two runs
    # of one seed are identical. 0 (default): every core but one (app/training/threads.py default_threads),
    # which no busy core elsewhere can stall; N: that many. `adaptive` (carried as -1, threads.ADAPTIVE) trades
    # that reproducibility for speed: a tuner re-picks one thread or all cores as the machine's load changes.
    training_threads: int = Field(0, ge=-1)
    # Where runs, their history and every snapshot are kept (SQLite, runs.db); a per-user data directory
    # (e.g. ~/.local/share/filterscope), so that runs survive restarts and are never mixed between users.
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("filterscope")))
    # A default `tiny` run takes ~4 MB, `classic` ~20 MB: 2 GB holds hundreds. Past it the oldest ended runs go.
    max_disk: int = Field(2 * 1024**3, ge=1)
    # Training seconds after which the next snapshot is followed by a checkpoint (checkpoints sit between stored
    # moments): a crash loses at most this plus one snapshot interval. Each replaces the previous one; what a
    # run keeps for good is one anchor (half way through) and its final model (training/checkpoints.py).
    checkpoint_seconds: float = Field(3.0, gt=0)
    # 10 MB covers a 12-megapixel phone JPEG with room to spare; larger files are refused unread.
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1)
    # A zip of a person's own pictures (POST /api/datasets): 100 MB is a few hundred phone photos, more than a
    # 64-px data set needs; refused unread past it (the pictures inside are capped again: datasets/uploaded.py).
    max_dataset_upload_bytes: int = Field(100 * 1024 * 1024, ge=1)
    # 40 megapixels decodes in well under a second; a larger declared size is treated as a decompression bomb.
    max_image_pixels: int = Field(40_000_000, ge=1)
    # Host names the server answers to besides localhost, 127.0.0.1 and [::1] (`serve` adds the bound address
    # and every --allow-host; "*" allows any): anything else is a DNS-rebinding page, refused with 400.
    allowed_hosts: list[str] = Field(default_factory=list)
    # A run config is well under 1 KB; 64 KB leaves room and bounds what the event loop ever parses.
    max_json_bytes: int = Field(64 * 1024, ge=1024)
    # Each chunk of a request body must arrive within this, so no client holds a request (or shutdown) open.
    body_timeout: float = Field(10.0, gt=0)
    # When set, creating a run needs `Authorization: Bearer <server_token>`; `serve` makes one up and prints
    # it when bound to anything but loopback (as Jupyter does), since then the whole network can reach it.
    server_token: str = ""
    # Where runs train: "" (default) threads of this server; "local" a Ray instance of this machine; or the
    # address of a running Ray cluster (runs/cluster.py). Ray is an optional dependency (filterscope[ray]).
    ray: str = ""
    # Add the run filterscope ships (tiny pretrained on Fashion-MNIST, record/bundle.py) to the data directory
    # once, so a fresh install has a start to fine-tune from; deleting it is for good. 3 MB on disk.
    pretrained: bool = True
    # Snapshots a slow client may have queued before older ones are skipped (the newest always survives).
    client_max_snapshots: int = Field(2, ge=1)
    # Undroppable messages (steps, epochs, status) a stuck client may pile up before it is cut off.
    client_max_messages: int = Field(5000, ge=10)

    @field_validator("training_threads", mode="before")
    @classmethod
    def _adaptive(cls, value: object) -> object:
        """FILTERSCOPE_TRAINING_THREADS=adaptive, as the int the rest of the server passes around."""
        return -1 if isinstance(value, str) and value.strip().lower() == "adaptive" else value


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings."""
    return Settings()
