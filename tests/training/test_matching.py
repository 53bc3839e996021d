"""Filters matched across runs: a shuffled copy of a layer is recovered exactly, and the assignment is the
best one there is (checked against every permutation on small layers)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from filterscope.training.matching import cosine_matrix, match_filters


@pytest.mark.parametrize("filters", [3, 8, 32])
def test_a_shuffled_copy_of_a_layer_is_recovered_exactly(filters: int) -> None:
    rng = np.random.default_rng(filters)
    a = rng.normal(size=(filters, 3, 5, 5)).astype(np.float32)
    shuffle = rng.permutation(filters)
    b = a[shuffle] * rng.uniform(0.5, 2.0, size=(filters, 1, 1, 1)).astype(np.float32)  # scale does not matter
    match = match_filters(a, b)
    assert [shuffle[j] for j in match.permutation] == list(range(filters))  # B's counterpart of i is a's i
    assert all(s == pytest.approx(1.0, abs=1e-4) for s in match.similarity) and all(match.shared)


@pytest.mark.parametrize("seed", range(6))
def test_the_assignment_is_the_best_of_every_permutation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, 6, 1, 3, 3))
    sim = cosine_matrix(a, b)
    best = max(itertools.permutations(range(6)), key=lambda p: sum(sim[i, j] for i, j in enumerate(p)))
    match = match_filters(a, b)
    assert sum(sim[i, j] for i, j in enumerate(match.permutation)) == pytest.approx(
        sum(sim[i, j] for i, j in enumerate(best)))
    assert sorted(match.permutation) == list(range(6))


def test_layers_of_different_shapes_do_not_match() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        match_filters(np.zeros((8, 1, 5, 5)), np.zeros((6, 1, 5, 5)))


def test_an_all_zero_filter_matches_with_similarity_zero() -> None:
    a = np.zeros((2, 1, 2, 2))
    a[0, 0, 0, 0] = 1
    match = match_filters(a, a.copy())
    assert match.permutation == [0, 1] and match.similarity == [1.0, 0.0]
