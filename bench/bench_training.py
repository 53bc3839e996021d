"""Instrumentation overhead, bytes per snapshot and snapshot-to-client latency.

Trains the same model on the same data, with the same config, twice per round: once as a bare PyTorch loop
(forward, loss, backward, step, the same cosine schedule and per-epoch test evaluation, nothing else) and once
through filterscope (engine in its thread, snapshots encoded and streamed to one WebSocket client that reads
everything, over a real uvicorn server on loopback). Prints samples/s for both, their ratio, the size of a
snapshot frame and how long frames take from encoding to the client.

    .venv/bin/python -m bench.bench_training [--model tiny] [--dataset mnist] [--epochs 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

import httpx2 as httpx
import torch
import torch.nn.functional as F
from websockets.sync.client import connect

from app.streaming.codec import decode_frame
from app.training.config import TrainConfig
from app.training.data import to_tensors
from app.training.datasets import get_dataset
from app.training.models import build_model, init_weights
from bench.common import pct, serve


def bare_loop(cfg: TrainConfig) -> float:
    """Train with a plain loop; return samples per second over the whole run."""
    start = time.perf_counter()
    dataset = get_dataset(cfg.dataset)
    data = to_tensors(dataset, torch.device("cpu"))
    g = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg.model, dataset.info.channels, dataset.info.size, len(dataset.info.classes), cfg.dropout)
    init_weights(model, g)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = data.x_train.shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total, step = steps_per_epoch * cfg.epochs, 0
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


def engine_run(cfg: TrainConfig, base: str) -> dict[str, Any]:
    """Train through the server with one client attached; return throughput and what the client saw."""
    frames: list[int] = []
    latencies: list[float] = []
    accuracy: list[float] = []
    start = time.perf_counter()
    run = httpx.post(f"http://{base}/api/runs", json=cfg.model_dump(), timeout=30).json()
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
            if msg["type"] == "status" and msg["status"] in ("finished", "failed", "diverged", "stopped"):
                break
    seconds = time.perf_counter() - start
    n = get_dataset(cfg.dataset).info.train_count
    return {"samples_per_s": n * cfg.epochs / seconds, "seconds": seconds, "frames": frames,
            "latencies": latencies[1:], "accuracy": accuracy}  # the first frame was waiting at connect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="bare/engine pairs, run back to back")
    args = parser.parse_args()
    cfg = TrainConfig(model=args.model, dataset=args.dataset, epochs=args.epochs)
    print(f"config: {cfg.model_dump_json()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    server, base = serve()
    bare, engine = [], []
    try:
        for r in range(args.rounds):
            bare.append(bare_loop(cfg))
            engine.append(engine_run(cfg, base))
            print(f"round {r + 1}: bare {bare[-1]:,.0f} samples/s, filterscope {engine[-1]['samples_per_s']:,.0f} "
                  f"samples/s ({engine[-1]['seconds']:.1f} s, test accuracy {engine[-1]['accuracy'][-1]:.4f})")
    finally:
        server.terminate()
        server.wait(10)
    best = max(engine, key=lambda e: e["samples_per_s"])
    frames, lat = best["frames"], best["latencies"]
    print()
    print(f"bare PyTorch loop     {max(bare):>10,.0f} samples/s")
    print(f"filterscope engine    {best['samples_per_s']:>10,.0f} samples/s  (1 WebSocket client attached)")
    ratios = [e["samples_per_s"] / b for b, e in zip(bare, engine, strict=True)]
    print(f"ratio, best of each   {best['samples_per_s'] / max(bare):>10.3f}  (goal >= 0.95)")
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
    print(f"ratio, per round      {statistics.median(ratios):>10.3f}  (median; range {spread}: identical runs "
          "vary this much on a shared CPU)")
    print(f"snapshots streamed    {len(frames):>10d}")
    print(f"bytes per snapshot    {statistics.median(frames):>10,.0f}  (median; max {max(frames):,})")
    print(f"encode -> client      p50 {1000 * pct(lat, 0.5):.1f} ms, p95 {1000 * pct(lat, 0.95):.1f} ms")
    print(f"test accuracy         {best['accuracy'][-1]:.4f} after {cfg.epochs} epochs")


if __name__ == "__main__":
    main()
