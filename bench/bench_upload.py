"""Upload latency: decode, preprocess, forward and encode, as a client of a real server sees it.

Starts the server in its own process, trains `tiny` on mnist for one epoch, then posts images to
POST /api/runs/{id}/inspect over loopback HTTP and prints p50/p95 of the round trip for
a 12-megapixel photo-like JPEG (goal p95 < 100 ms) and a 28x28 PNG digit (goal p95 < 20 ms).
Then it does the same while a second run trains beside it, which is how the product is used.

    .venv/bin/python -m bench.bench_upload [--large 40] [--small 200]
"""

from __future__ import annotations

import argparse
import io
import time
from typing import Any

import httpx2 as httpx
import numpy as np
from PIL import Image, ImageDraw

from bench.common import pct, serve
from filterscope.training.datasets import get_dataset


def photo_12mp() -> bytes:
    """A 4000x3000 JPEG with a photo's smooth light and fine grain (quality 90, a few MB)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:3000, 0:4000].astype(np.float32)
    base = np.stack([120 + 80 * np.sin(x / 700), 110 + 60 * np.cos(y / 500), 90 + 50 * np.sin((x + y) / 900)], -1)
    grain = rng.normal(0, 6, (3000, 4000, 1)).astype(np.float32)
    image = Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8))
    ImageDraw.Draw(image).text((1500, 1200), "7", fill=(10, 10, 10), font_size=900)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def digit_png() -> bytes:
    """A 28x28 test digit as a PNG."""
    buf = io.BytesIO()
    Image.fromarray(get_dataset("mnist").x_test[3][0]).save(buf, "PNG")
    return buf.getvalue()


def wait_for(client: httpx.Client, run_id: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    while True:
        run: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        time.sleep(0.2)


def timings(client: httpx.Client, run_id: str, name: str, data: bytes, count: int) -> list[float]:
    """Round-trip seconds of `count` inspect requests (after two warm-up requests)."""
    out = []
    for i in range(count + 2):
        start = time.perf_counter()
        res = client.post(f"/api/runs/{run_id}/inspect", files={"file": (name, data)})
        elapsed = time.perf_counter() - start
        res.raise_for_status()
        if i >= 2:
            out.append(elapsed)
    return out


def report(label: str, seconds: list[float], goal_ms: float) -> None:
    p50, p95 = 1000 * pct(seconds, 0.5), 1000 * pct(seconds, 0.95)
    verdict = "meets" if p95 < goal_ms else "MISSES"
    print(f"{label:<44} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   ({verdict} p95 < {goal_ms:.0f} ms, n={len(seconds)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=40, help="requests with the 12 MP JPEG")
    parser.add_argument("--small", type=int, default=200, help="requests with the 28x28 PNG")
    args = parser.parse_args()
    large, small = photo_12mp(), digit_png()
    print(f"12 MP JPEG: {len(large) / 1e6:.1f} MB; 28x28 PNG: {len(small)} bytes")
    server, base = serve()
    try:
        with httpx.Client(base_url=f"http://{base}", timeout=60) as client:
            run = client.post("/api/runs", json={"epochs": 1}).json()
            wait_for(client, run["id"], ("finished",))
            report("12 MP JPEG, server otherwise idle", timings(client, run["id"], "a.jpg", large, args.large), 100)
            report("28x28 PNG, server otherwise idle", timings(client, run["id"], "d.png", small, args.small), 20)
            busy = client.post("/api/runs", json={"epochs": 50}).json()
            wait_for(client, busy["id"], ("running",))
            report("12 MP JPEG, a run training beside it", timings(client, run["id"], "a.jpg", large, args.large), 100)
            report("28x28 PNG, a run training beside it", timings(client, run["id"], "d.png", small, args.small), 20)
            client.post(f"/api/runs/{busy['id']}/stop", headers={"Authorization": f"Bearer {busy['token']}"})
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
