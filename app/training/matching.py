"""Filters matched across two runs: which filter of run B is run A's filter i?

Two runs of one architecture learn much the same detectors in a different order (the order is an accident of
the random start), so filter 3 of one run and filter 3 of another have nothing to do with each other. Pairing
each filter of A with the filter of B whose weights point the same way, every filter used once, is the
assignment problem on the cosine similarity of the flattened kernels; scipy's `linear_sum_assignment` solves it
exactly (Jonker-Volgenant, milliseconds for 64 filters). A pair with a high similarity is a detector both runs
learnt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHARED = 0.8  # cosine similarity above which a pair counts as one detector both runs learnt
# A filter has moved from its random start once its cosine with it falls below this: weight decay alone only
# shrinks a kernel (cosine 1), and runs of one seed start from the same kernels, so a stalled or dead run's
# filters still point where they began and would match each other perfectly without learning anything.
MOVED = 0.9


@dataclass(frozen=True)
class Match:
    """For every filter i of A: `permutation[i]`, its counterpart in B, and their cosine `similarity[i]`."""

    permutation: list[int]
    similarity: list[float]

    @property
    def shared(self) -> list[bool]:
        return [s >= SHARED for s in self.similarity]


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(O, O) cosine similarity of every filter of `a` with every filter of `b`, each (O, I, kh, kw)."""
    fa = a.reshape(a.shape[0], -1).astype(np.float64)
    fb = b.reshape(b.shape[0], -1).astype(np.float64)
    na = np.linalg.norm(fa, axis=1, keepdims=True)
    nb = np.linalg.norm(fb, axis=1, keepdims=True)
    fa = np.divide(fa, na, out=np.zeros_like(fa), where=na > 0)
    fb = np.divide(fb, nb, out=np.zeros_like(fb), where=nb > 0)
    return np.asarray(fa @ fb.T)  # (O_a, O_b)


def moved_from(now: np.ndarray, start: np.ndarray) -> list[bool]:
    """Per filter (O, I, kh, kw): whether it turned away from its step-0 kernel (cosine below MOVED); a filter
    with NaN or zero weights has not learnt anything."""
    fa = now.reshape(now.shape[0], -1).astype(np.float64)
    fb = start.reshape(start.shape[0], -1).astype(np.float64)
    norms = np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.einsum("ij,ij->i", fa, fb) / norms
    return [bool(np.isfinite(c) and c < MOVED) for c in cos]


def match_filters(a: np.ndarray, b: np.ndarray) -> Match:
    """The pairing of A's filters with B's that maximises the summed cosine similarity (one-to-one)."""
    if a.shape != b.shape:
        raise ValueError(f"the layers differ in shape: {list(a.shape)} and {list(b.shape)}")
    sim = cosine_matrix(a, b)
    # Imported here: scipy.optimize takes ~0.6 s to import, which the server's start-up need not pay.
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(sim, maximize=True)
    order = np.empty(a.shape[0], np.int64)
    order[rows] = cols
    return Match([int(j) for j in order], [round(float(sim[i, j]), 4) for i, j in enumerate(order)])
