"""How far a layer's filters have learned: distance from their start, and spatial structure.

Two numbers tell noise from a detector without looking. A filter that kept its random start has a cosine
similarity near 1 with itself at step 0; one that learned has moved away from it. Random kernels have no
spatial structure: neighbouring entries are uncorrelated. Strokes, edges and blobs are smooth: each entry
resembles its right and lower neighbours, so the lag-1 autocorrelation is high.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def cosine_to_start(weight: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per filter, the cosine similarity of W (O, I, kh, kw) with W at step 0; 1 for an untouched filter."""
    w = weight.reshape(weight.shape[0], -1).astype(np.float64)  # (O, I*kh*kw)
    s = start.reshape(start.shape[0], -1).astype(np.float64)
    with np.errstate(all="ignore"):  # weights gone NaN (a diverging run) give NaN, not warnings
        norms = np.linalg.norm(w, axis=1) * np.linalg.norm(s, axis=1)
        dots = (w * s).sum(axis=1)
        out: np.ndarray = np.where(norms == 0, 0.0, dots / np.where(norms == 0, 1.0, norms))
    return out


def moved_from_start(weight: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per filter, ‖W − W₀‖ / ‖W₀‖: how far it has moved, relative to where it started."""
    with np.errstate(all="ignore"):  # weights gone NaN (a diverging run) give NaN, not warnings
        diff = (weight - start).reshape(weight.shape[0], -1).astype(np.float64)
        base = np.linalg.norm(start.reshape(start.shape[0], -1).astype(np.float64), axis=1)
        out: np.ndarray = np.linalg.norm(diff, axis=1) / np.where(base > 0, base, 1.0)
    return out


def spatial_autocorrelation(weight: np.ndarray) -> np.ndarray:
    """Per filter and input channel (O, I): lag-1 autocorrelation of the kernel after removing its mean.

    The mean product of each entry with its right and lower neighbours, over the mean square of the entries:
    about 0 for noise (slightly below, -1/(n-1), once the mean is removed), near 1 for a smooth ramp, and
    negative for a checkerboard. A kernel that is all one value (or 1x1) has no structure: 0.
    """
    with np.errstate(all="ignore"):  # weights gone NaN (a diverging run) give NaN, not warnings
        k = weight.astype(np.float64)  # (O, I, kh, kw)
        k = k - k.mean(axis=(2, 3), keepdims=True)
        pairs = np.concatenate([
            (k[..., :, :-1] * k[..., :, 1:]).reshape(*k.shape[:2], -1),  # right neighbours
            (k[..., :-1, :] * k[..., 1:, :]).reshape(*k.shape[:2], -1),  # lower neighbours
        ], axis=2)
        if pairs.shape[2] == 0:
            return np.zeros(k.shape[:2])
        energy = (k * k).mean(axis=(2, 3))
        flat = energy <= 1e-20
        out: np.ndarray = np.where(flat, 0.0, pairs.mean(axis=2) / np.where(flat, 1.0, energy))
    return out


@dataclass(frozen=True)
class LayerMeasures:
    """A layer's filters compared with their start, as means over its filters."""

    cosine_to_start: float  # 1: every filter is still its random start; ~0: unrelated to it
    moved: float  # ‖W − W₀‖ / ‖W₀‖ over the whole layer
    structure: float  # mean lag-1 spatial autocorrelation of its kernels: ~0 noise, ~1 smooth

    def as_dict(self) -> dict[str, float | None]:
        """Rounded for the wire; JSON has no NaN, so a diverged layer's measures travel as null."""
        return {k: round(v, 4) if math.isfinite(v) else None for k, v in
                (("cosine_to_start", self.cosine_to_start), ("moved", self.moved), ("structure", self.structure))}


def layer_measures(weight: np.ndarray, start: np.ndarray) -> LayerMeasures:
    """The measures of one layer's weights (O, I, kh, kw) against the same layer at step 0."""
    with np.errstate(all="ignore"):  # weights gone NaN (a diverging run) give NaN, not warnings
        base = float(np.linalg.norm(start))
        moved = float(np.linalg.norm(weight - start) / base) if base > 0 else 0.0
    return LayerMeasures(
        cosine_to_start=float(cosine_to_start(weight, start).mean()),
        moved=moved,
        structure=float(spatial_autocorrelation(weight).mean()),
    )
