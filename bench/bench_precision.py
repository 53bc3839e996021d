"""What fewer bits for dW and ΔW would save on disk, and what a person would see change: the default run trained
in process (one thread), every snapshot's float W, dW and ΔW kept, then each way of quantising them measured on
the same numbers. For each: bytes over the run compressed as the store compresses (zlib level 1), and the share of
kernel entries whose three significant digits, as the inspector's tables show them, differ from the float's.

    .venv/bin/python -m bench.bench_precision [--config JSON]

The store's way is the first row (int16, one scale per layer: its largest |value|). Issue 26 asks for a default
run of at most 3 MB "where it loses nothing a person sees": this bench says what the bytes left in dW and ΔW cost.
"""

from __future__ import annotations

import argparse
import zlib
from typing import Any

import numpy as np
import torch

from filterscope.training.config import TrainConfig
from filterscope.training.engine import Engine
from filterscope.training.snapshots import Snapshot

LEVEL = 1  # as the store's writer compresses a frame
WAYS = [(16, "layer"), (14, "layer"), (13, "layer"), (12, "layer"),
        (16, "filter"), (14, "filter"), (13, "filter"), (12, "filter")]
SHOWN_EVERY = 4  # snapshots whose digits are compared (formatting every entry of every one is slow)


def captured(config: TrainConfig) -> list[dict[str, dict[str, np.ndarray]]]:
    """Every snapshot's conv layers' float weight, grad and update, copied as the engine emits them."""
    kept: list[dict[str, dict[str, np.ndarray]]] = []

    def emit(event: Any) -> None:
        if isinstance(event, Snapshot):
            kept.append({layer.name: {key: np.array(getattr(layer, key), np.float32)
                                      for key in ("weight", "grad", "update")} for layer in event.layers})

    torch.set_num_threads(1)
    engine = Engine(config, emit=emit, threads=1)
    engine.start()
    if not engine.join(600):
        raise SystemExit("the run did not finish in 10 minutes")
    return kept


def quantised(a: np.ndarray, bits: int, per: str) -> tuple[np.ndarray, np.ndarray]:
    """The integer codes and the values they stand for, with one scale per layer or per filter (its largest
    |value|)."""
    top = 2 ** (bits - 1) - 1
    if per == "filter":
        scale = np.abs(a.reshape(a.shape[0], -1)).max(axis=1).reshape(-1, *([1] * (a.ndim - 1)))
    else:
        scale = np.full([1] * a.ndim, np.abs(a).max())
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    codes = np.round(a * (top / scale)).astype("<i2")
    return codes, (codes * (scale / top)).astype(np.float32)


def digits(a: np.ndarray) -> np.ndarray:
    """Three significant digits of each entry, as the kernel tables show them (toPrecision(3))."""
    return np.array([f"{v:.3g}" for v in a.ravel().tolist()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="{}", help="the run config (JSON); the default run without it")
    args = parser.parse_args()
    config = TrainConfig.model_validate_json(args.config)
    snaps = captured(config)
    print(f"{len(snaps)} snapshots of the default run ({config.model}/{config.dataset}, {config.epochs} epochs)")
    for layer in snaps[0]:
        for key, shown in (("grad", "dW"), ("update", "ΔW")):
            print(f"\n{layer} {shown} ({snaps[0][layer][key].size:,} entries a snapshot)")
            print("  bits per     bytes (zlib 1)   entries whose 3 digits differ   "
                  "of those >= 10 % of their filter's largest")
            for bits, per in WAYS:
                size, differ, n, differ_big, n_big = 0, 0, 0, 0, 0
                for i, snap in enumerate(snaps):
                    a = snap[layer][key]
                    codes, back = quantised(a, bits, per)
                    size += len(zlib.compress(codes.tobytes(), LEVEL))
                    if i % SHOWN_EVERY:
                        continue
                    wrong = digits(a) != digits(back)
                    top = np.abs(a.reshape(a.shape[0], -1)).max(axis=1).reshape(-1, *([1] * (a.ndim - 1)))
                    big = (np.abs(a) >= 0.1 * top).ravel()
                    differ, n = differ + int(wrong.sum()), n + wrong.size
                    differ_big, n_big = differ_big + int(wrong[big].sum()), n_big + int(big.sum())
                store = "  (the store's)" if (bits, per) == WAYS[0] else ""
                print(f"  {bits:2d} {per:6s}   {size / 1e6:8.3f} MB      {differ / max(1, n):8.2%}"
                      f"                        {differ_big / max(1, n_big):8.2%}{store}")


if __name__ == "__main__":
    main()
