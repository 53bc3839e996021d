"""Runs trained on a Ray cluster: one actor per run, behind the same run handle as a thread of this server.

`filterscope serve --ray local` starts a Ray instance of this machine (bound to loopback: nothing else can
join it or reach it); `--ray ADDRESS` joins a running cluster (every node needs filterscope installed, the
same version). The server stays the one page, store and API: each run's `Trainer` actor trains it in a worker
process of some node and hands back every event the run log takes, made there (frames encoded, checkpoints
serialised), which `RayRun` passes to the run's record exactly as a local run's thread would. Controls are
actor calls that answer in about a millisecond.

What a run needs travels with it: its config, its checkpoint (to resume) or its start (to fine-tune), and,
for a data set a person imported, the data set itself, put in Ray's object store once per server and shared
by every run on it (a shipped data set is inside the installed package on every node).

The actors belong to the server's Ray job: when the server stops, or dies, Ray ends them (nothing trains on
for nobody). A worker that dies (killed, out of memory, its node lost) leaves its run `interrupted` within
a second or two, with everything it had sent kept; Resume builds a new actor from the last checkpoint, on any
node, and ends bit for bit where the run never interrupted would, as a local run does (fixed threads).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ..training.config import TrainConfig
from ..training.datasets import get_dataset, get_info, uploaded
from ..training.datasets.registry import names as dataset_names
from ..training.datasets.registry import register
from ..training.events import AnalysisReady, CheckpointBlob, FrameEvent, RunEvent, StateError, Status, StatusEvent, made
from .handle import Progress
from .local import LocalRun

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # how long a drain waits for the next events: a dead worker is noticed within this
# Events are sent in batches at most this old: one round trip per ~5 batches of `tiny` instead of one per batch
# (each costs both processes a few hundred microseconds of a core the training needs); a page sees them ~50 ms
# later, which it does not notice among its 100 ms of drawing.
BATCH_SECONDS = 0.05
CALL_SECONDS = 60.0  # a control answers in milliseconds; building an actor (a data set, a model) in seconds
INSTALL = "pip install 'filterscope[ray]'"


def ray_module() -> Any:
    """Ray, or ImportError with a sentence saying how to install it (an optional dependency)."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"--ray needs Ray, an optional dependency: {INSTALL}.") from None
    return ray


def connect(address: str) -> dict[str, Any]:
    """Start (`local`) or join (an address) a Ray cluster for this process; its resources."""
    if address == "local":
        # Single-machine mode: Ray then binds to loopback rather than the machine's reachable address. Read at
        # Ray's import, so said before it (a person's own setting wins).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = ray_module()
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False,
                 namespace="filterscope", configure_logging=False)
    resources = ray.cluster_resources()
    log.info("Ray cluster at %s: %s CPUs, %s GPUs, %d node(s)", address, resources.get("CPU", 0),
             resources.get("GPU", 0), len([n for n in ray.nodes() if n.get("Alive")]))
    return dict(resources)


def cpus_per_run(threads: int | str) -> int:
    """The CPUs a run's actor asks for: its training threads (0, `adaptive` or unset: one)."""
    return threads if isinstance(threads, int) and threads > 0 else 1


def training_cap(threads: int | str) -> int:
    """How many runs the cluster's live nodes train at once: their CPUs over a run's."""
    return max(1, int(ray_module().cluster_resources().get("CPU", 0)) // cpus_per_run(threads))


def disconnect() -> None:
    """Leave the cluster (a `local` instance stops with it); the server's actors end with its job."""
    ray = ray_module()
    if ray.is_initialized():
        ray.shutdown()


def portable(event: RunEvent) -> RunEvent:
    """An event as it crosses to the server: what a local run defers (an encoded frame, a checkpoint's bytes,
    an analysis's JSON) made now, in the worker, so that it pickles."""
    if isinstance(event, FrameEvent):
        return replace(event, frame=made(event.frame))
    if isinstance(event, CheckpointBlob):
        return replace(event, data=made(event.data))
    if isinstance(event, AnalysisReady):
        return replace(event, body=made(event.body))
    return event


class Trainer:
    """The actor that trains one run in a worker process (wrapped by ray.remote in RayRun). Its methods run on
    the actor's own threads (max_concurrency), beside the training thread."""

    def __init__(self, config_json: str, threads: int | str, checkpoint_seconds: float, checkpoint: bytes | None,
                 first_seq: int, initial: dict[str, torch.Tensor] | None, dataset: Any | None) -> None:
        config = TrainConfig.model_validate_json(config_json)
        if dataset is not None and config.dataset not in dataset_names():  # a person's own, from the driver
            register(dataset.info)(lambda: dataset)
        self._events: list[RunEvent] = []
        self._cond = threading.Condition()
        self._run = LocalRun(config, self._sink, threads=threads, checkpoint_seconds=checkpoint_seconds,
                             checkpoint=checkpoint, first_seq=first_seq, initial=initial)

    def _sink(self, event: RunEvent) -> None:  # the training thread: queue it, make it later (drain)
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    def meta(self) -> dict[str, Any]:
        return self._run.meta()

    def status(self) -> str:
        return self._run.status.value

    def where(self) -> dict[str, Any]:
        """The node and process that train the run."""
        import ray

        return {"node": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
                "pid": os.getpid()}

    def control(self, action: str, *args: Any) -> None:
        """A RunHandle control (start, pause, resume, step, stop, interrupt, set_lr, set_probe_*)."""
        getattr(self._run, action)(*args)

    def drain(self, timeout: float) -> tuple[list[RunEvent], dict[str, Any], bool]:
        """The events since the last drain (waiting up to `timeout` for one), made portable; the run's progress;
        whether its training thread has ended."""
        with self._cond:
            some = self._cond.wait_for(lambda: bool(self._events), timeout)
        if some:
            time.sleep(BATCH_SECONDS)  # the events of the next few batches come in the same answer
        with self._cond:
            batch, self._events = self._events, []
        p = self._run.progress()
        done = self._run.started and self._run.join(0)
        return [portable(e) for e in batch], vars(p), done


class RayRun:
    """A run trained by a Ray actor (see RunHandle and the module's docstring)."""

    kind = "ray"
    # A person's own data sets, put in the object store once per server: name -> (the registered info, its ref).
    _datasets: dict[str, tuple[Any, Any]] = {}
    _datasets_lock = threading.Lock()

    def __init__(self, config: TrainConfig, sink: Callable[[RunEvent], None] | None = None, *,
                 threads: int | str = 0, checkpoint_seconds: float = 3.0, checkpoint: bytes | None = None,
                 first_seq: int = 0, initial: dict[str, torch.Tensor] | None = None) -> None:
        """Build the run's actor on the cluster (blocking, a second or two: its data set and model are built
        there); ValueError with a sentence if the config cannot train."""
        ray = ray_module()
        self._ray = ray
        self._sink = sink
        # A GPU where the cluster has one (the engine trains on CUDA when it sees a device), else none.
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        actor = ray.remote(Trainer).options(num_cpus=cpus_per_run(threads), num_gpus=gpus, max_concurrency=8,
                                            max_restarts=0)
        self._actor = actor.remote(config.model_dump_json(), threads, checkpoint_seconds, checkpoint, first_seq,
                                   initial, self._dataset(config.dataset))
        try:
            self._meta, status = self._get(self._actor.meta.remote()), self._get(self._actor.status.remote())
        except StateError as exc:
            raise ValueError(str(exc)) from None
        self._status = Status(status)
        self._progress = Progress(epoch=0, step=0, samples_seen=0, elapsed=0.0, instrument_seconds=0.0,
                                  lr=config.lr)
        self.where: dict[str, Any] | None = None
        self._pump: threading.Thread | None = None

    @classmethod
    def _dataset(cls, name: str) -> Any | None:
        """The object-store reference of a person's own data set (None for a shipped one: every node has it).
        One deleted since is let go; one imported again under its name (a new registered info) is put again."""
        with cls._datasets_lock:
            for gone in [n for n in cls._datasets if not uploaded.is_uploaded(n)]:
                del cls._datasets[gone]
            if not uploaded.is_uploaded(name):
                return None
            info = get_info(name)
            kept = cls._datasets.get(name)
            if kept is None or kept[0] is not info:
                kept = cls._datasets[name] = (info, ray_module().put(get_dataset(name)))
            return kept[1]

    def _get(self, ref: Any, timeout: float = CALL_SECONDS) -> Any:
        """The result of an actor call; its StateError or ValueError raised here, a dead worker as StateError."""
        ray = self._ray
        try:
            return ray.get(ref, timeout=timeout)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, (StateError, ValueError)):
                raise type(cause)(str(cause)) from None
            raise
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
            raise StateError(f"The worker training this run is gone ({type(exc).__name__}); resume the run to go "
                             "on from its last checkpoint.") from None

    def listen(self, sink: Callable[[RunEvent], None]) -> None:
        self._sink = sink

    def meta(self) -> dict[str, Any]:
        return dict(self._meta)

    @property
    def status(self) -> Status:
        return self._status

    @property
    def started(self) -> bool:
        return self._pump is not None

    def progress(self) -> Progress:
        return self._progress

    def start(self) -> None:
        self._get(self._actor.control.remote("start"))
        self.where = self._get(self._actor.where.remote())
        self._pump = threading.Thread(target=self._follow, name="ray-run", daemon=True)
        self._pump.start()

    def _control(self, action: str, *args: Any) -> None:
        self._get(self._actor.control.remote(action, *args))

    def pause(self) -> None:
        self._control("pause")

    def resume(self) -> None:
        self._control("resume")

    def step(self) -> None:
        self._control("step")

    def stop(self) -> None:
        self._control("stop")

    def interrupt(self) -> None:
        self._control("interrupt")

    def set_lr(self, lr: float) -> None:
        self._control("set_lr", lr)

    def set_probe_index(self, index: int) -> None:
        self._control("set_probe_index", index)

    def set_probe_pixels(self, pixels: np.ndarray) -> None:
        self._control("set_probe_pixels", pixels)

    def join(self, timeout: float | None = None) -> bool:
        if self._pump is None:
            return True
        self._pump.join(timeout)
        return not self._pump.is_alive()

    def _follow(self) -> None:
        """The pump: the actor's events into the run's record until the run ends or its worker is gone."""
        ray = self._ray
        while True:
            try:
                events, progress, done = ray.get(self._actor.drain.remote(POLL_SECONDS), timeout=CALL_SECONDS)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, ray.exceptions.RayTaskError) as exc:
                self._lost(exc)
                break
            self._progress = Progress(**progress)
            for event in events:
                if isinstance(event, StatusEvent):
                    self._status = event.status  # before the record hears it: its callbacks ask the handle
                if self._sink is not None:
                    self._sink(event)
            if done and not events:
                break
        ray.kill(self._actor)  # its CPUs back to the cluster (the run's thread has ended, or the worker is gone)

    def _lost(self, exc: Exception) -> None:
        """The worker died under a live run: the run is interrupted where its record stands."""
        if self._status.ended:
            return
        where = self.where or {}
        p = self._progress
        message = (f"The worker training this run (node {where.get('ip', '?')}, process {where.get('pid', '?')}) "
                   f"stopped ({type(exc).__name__}): everything it sent is kept; resume the run to go on from its "
                   "last checkpoint, on any node.")
        log.warning("run lost its Ray worker %s: %s", where, exc)
        self._status = Status.INTERRUPTED
        if self._sink is not None:
            self._sink(StatusEvent(Status.INTERRUPTED, message, p.epoch, p.step, p.lr, p.elapsed,
                                   p.instrument_seconds, p.samples_seen))
