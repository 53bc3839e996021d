"""Instrumentation overhead, bytes per snapshot and snapshot-to-client latency.

Trains the same model on the same data, with the same config, four ways per round:

1. a bare PyTorch loop (forward, loss, backward, step, the same cosine schedule and per-epoch test
   evaluation, nothing else), in a thread of this process;
2. filterscope's engine in a thread of this process, no server: what the instrumentation itself costs
   (snapshots taken, encoded as for the wire, handed to a listener);
3. the engine in a real uvicorn server on loopback, nobody watching;
4. the same with one WebSocket client that reads and decodes every frame.

Prints samples/s, each variant's ratio to the bare loop (median of the per-round ratios), the size of a
snapshot frame and how long frames take from encoding to the client.

On a shared 2-core VM the wall-clock figures swing by +-20% from round to round (the bare loop's alone
does), so the bench also prints the share of training time the training thread itself spent on
filterscope's work (snapshots, encoding, loss messages), which the engine measures around that work as it
happens: a figure the machine's noise moves far less. What it leaves out is what the server's other threads
cost training (the event loop takes the GIL now and then); variants 3 and 4 include that.

    .venv/bin/python -m bench.bench_training [--model tiny] [--dataset mnist] [--epochs 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx2 as httpx
import torch
import torch.nn.functional as F
from websockets.sync.client import connect

from bench.common import pct, serve
from filterscope.streaming.codec import decode_frame, encode_event, encode_snapshot
from filterscope.training.analysis import AnalysisEvent
from filterscope.training.config import TrainConfig
from filterscope.training.data import to_tensors
from filterscope.training.datasets import get_dataset
from filterscope.training.engine import CheckpointEvent, Engine, Event
from filterscope.training.models import INIT_SCALES, build_model, init_weights
from filterscope.training.snapshots import Snapshot
from filterscope.training.threads import serial_torch, training_torch

FINAL = ("finished", "failed", "diverged", "stopped")


def in_thread(fn: Callable[[], float]) -> float:
    """Run `fn` in a new thread with torch's default threads, as the engine trains (see app/training/threads.py)."""
    out: list[float] = []

    def target() -> None:
        training_torch()
        out.append(fn())

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    return out[0]


def bare_loop(cfg: TrainConfig) -> float:
    """Train with a plain loop; return samples per second of training (data and model set up beforehand)."""
    dataset = get_dataset(cfg.dataset)
    data = to_tensors(dataset, torch.device("cpu"))
    g = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg.model, dataset.info.channels, dataset.info.size, len(dataset.info.classes), cfg.dropout)
    init_weights(model, g, INIT_SCALES[cfg.init])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = data.x_train.shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total, step = steps_per_epoch * cfg.epochs, 0
    start = time.perf_counter()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=g)
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            for group in opt.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            loss.item()  # a real loop logs its loss
            step += 1
        model.eval()
        with torch.no_grad():
            for i in range(0, data.x_test.shape[0], 1000):
                model(data.x_test[i:i + 1000]).argmax(1)
        model.train()
    return n * cfg.epochs / (time.perf_counter() - start)


def engine_here(cfg: TrainConfig) -> dict[str, Any]:
    """Train through the engine in this process, every event encoded as the server would, nobody watching."""
    def listen(event: Event) -> None:
        if isinstance(event, Snapshot):
            encode_snapshot(event)
        elif not isinstance(event, CheckpointEvent | AnalysisEvent):  # analyses are stored, not streamed whole
            encode_event(event)

    engine = Engine(cfg, emit=listen)
    engine.start()
    engine.join()
    n = get_dataset(cfg.dataset).info.train_count
    return {"samples_per_s": n * cfg.epochs / engine.elapsed, "share": engine.instrument_seconds / engine.elapsed}


def engine_run(cfg: TrainConfig, base: str, *, watch: bool = True) -> dict[str, Any]:
    """Train through the server, with one WebSocket client reading everything (or, with watch=False, none).

    Throughput is the run's own `elapsed` (training time, like the bare loop's: set-up excluded).
    """
    frames: list[int] = []
    latencies: list[float] = []
    accuracy: list[float] = []
    run = httpx.post(f"http://{base}/api/runs", json=cfg.model_dump(), timeout=30).json()
    if watch:
        with connect(f"ws://{base}/ws/runs/{run['id']}", max_size=None) as ws:
            while True:
                raw = ws.recv(timeout=600)
                if isinstance(raw, bytes):
                    header, _ = decode_frame(raw)
                    latencies.append(time.time() - header["sent_at"])
                    frames.append(len(raw))
                    continue
                msg = json.loads(raw)
                if msg["type"] == "epoch":
                    accuracy.append(msg["test_accuracy"])
                if msg["type"] == "status" and msg["status"] in FINAL:
                    break
    while (run := httpx.get(f"http://{base}/api/runs/{run['id']}", timeout=30).json())["status"] not in FINAL:
        time.sleep(0.5)
    accuracy = accuracy or [h["test_accuracy"] for h in run["history"]]
    n = get_dataset(cfg.dataset).info.train_count
    return {"samples_per_s": n * cfg.epochs / run["elapsed"], "seconds": run["elapsed"],
            "share": run["instrument_seconds"] / run["elapsed"], "frames": frames,
            "latencies": latencies[1:], "accuracy": accuracy}  # the first frame was waiting at connect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the four variants, back to back")
    args = parser.parse_args()
    cfg = TrainConfig(model=args.model, dataset=args.dataset, epochs=args.epochs)
    print(f"config: {cfg.model_dump_json()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    serial_torch()  # this thread's torch work stays off OpenMP, as the server's event loop does
    server, base = serve()
    bare: list[float] = []
    variants: dict[str, list[dict[str, Any]]] = {"engine, no server": [], "server, no client": [],
                                                 "server + 1 WS client": []}
    here, alone, watched = variants.values()
    jobs: list[Callable[[], None]] = [
        lambda: bare.append(in_thread(lambda: bare_loop(cfg))),
        lambda: here.append(engine_here(cfg)),
        lambda: alone.append(engine_run(cfg, base, watch=False)),
        lambda: watched.append(engine_run(cfg, base)),
    ]
    try:
        for r in range(args.rounds):
            # the variants take turns going first, so that a slow spell of the machine falls on each in turn
            for job in jobs[r % 4:] + jobs[:r % 4]:
                job()
            print(f"round {r + 1}: bare {bare[-1]:,.0f}, " + ", ".join(
                f"{label} {runs[-1]['samples_per_s']:,.0f}" for label, runs in variants.items())
                + f" samples/s (test accuracy {watched[-1]['accuracy'][-1]:.4f})")
    finally:
        server.terminate()
        server.wait(10)
    print()
    print(f"bare PyTorch loop        {statistics.median(bare):>8,.0f} samples/s  (median of {args.rounds}; "
          f"range {min(bare):,.0f}-{max(bare):,.0f})")
    for label, runs in variants.items():
        speeds = [e["samples_per_s"] for e in runs]
        ratios = [v / b for v, b in zip(speeds, bare, strict=True)]
        shares = [e["share"] for e in runs]
        print(f"{label:<24} {statistics.median(speeds):>8,.0f} samples/s  ratio {statistics.median(ratios):.3f} "
              f"(median per round; range {min(ratios):.2f}-{max(ratios):.2f}; goal >= 0.95)")
        print(f"{'':<24} filterscope's own work in the training thread: {100 * statistics.median(shares):.1f}% "
              f"of training time (median; {100 * min(shares):.1f}-{100 * max(shares):.1f}%)")
    frames = [f for e in watched for f in e["frames"]]
    lat = [x for e in watched for x in e["latencies"]]
    print(f"bytes per snapshot       {statistics.median(frames):>8,.0f}  (median; max {max(frames):,}; "
          f"{len(frames) // args.rounds} snapshots a run)")
    print(f"encode -> client         p50 {1000 * pct(lat, 0.5):.1f} ms, p95 {1000 * pct(lat, 0.95):.1f} ms")
    print(f"test accuracy            {watched[-1]['accuracy'][-1]:.4f} after {cfg.epochs} epochs")


if __name__ == "__main__":
    main()
