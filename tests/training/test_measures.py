"""The structure measures: how far filters moved from their start, and whether they are smooth or noise."""

from __future__ import annotations

import numpy as np

from filterscope.training.measures import cosine_to_start, layer_measures, moved_from_start, spatial_autocorrelation


def gabor(size: int = 5, theta: float = 0.6, wavelength: float = 6.0) -> np.ndarray:
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    along = x * np.cos(theta) + y * np.sin(theta)
    return np.exp(-(x**2 + y**2) / (2 * (size / 3) ** 2)) * np.cos(2 * np.pi * along / wavelength)


def test_noise_has_no_structure() -> None:
    noise = np.random.default_rng(0).normal(size=(500, 3, 5, 5))
    r = spatial_autocorrelation(noise)
    assert r.shape == (500, 3)
    assert abs(r.mean() + 1 / 24) < 0.02  # -1/(n-1) once the mean is removed


def test_ramps_and_gabors_are_structured() -> None:
    ramp = np.add.outer(np.arange(5.0), np.arange(5.0))[None, None]  # (1, 1, 5, 5)
    assert spatial_autocorrelation(ramp)[0, 0] > 0.6
    assert spatial_autocorrelation(gabor()[None, None])[0, 0] > 0.45
    checker = (np.indices((5, 5)).sum(axis=0) % 2 * 2 - 1.0)[None, None]
    assert spatial_autocorrelation(checker)[0, 0] < -0.9


def test_flat_and_one_by_one_kernels_have_none() -> None:
    assert spatial_autocorrelation(np.ones((2, 1, 3, 3))).tolist() == [[0.0], [0.0]]
    assert spatial_autocorrelation(np.ones((2, 4, 1, 1))).shape == (2, 4)


def test_a_filter_compared_with_itself() -> None:
    w = np.random.default_rng(1).normal(size=(8, 1, 5, 5))
    np.testing.assert_allclose(cosine_to_start(w, w), 1.0)
    np.testing.assert_allclose(moved_from_start(w, w), 0.0)
    np.testing.assert_allclose(cosine_to_start(-w, w), -1.0)
    np.testing.assert_allclose(moved_from_start(2 * w, w), 1.0)
    m = layer_measures(w, w)
    assert (m.cosine_to_start, m.moved) == (1.0, 0.0) and abs(m.structure) < 0.2


def test_a_filter_that_became_a_detector_moved_away_from_its_noise() -> None:
    rng = np.random.default_rng(2)
    start = 0.1 * rng.normal(size=(8, 1, 5, 5))
    end = start + np.stack([gabor(theta=t) for t in np.linspace(0, np.pi, 8)])[:, None]
    m = layer_measures(end, start)
    assert m.cosine_to_start < 0.4 and m.structure > 0.4 and m.moved > 2
    assert m.as_dict().keys() == {"cosine_to_start", "moved", "structure"}


def test_weights_gone_nan_give_null_measures_not_warnings() -> None:
    start = np.ones((2, 1, 3, 3))
    broken = np.full((2, 1, 3, 3), np.nan)
    assert layer_measures(broken, start).as_dict() == {"cosine_to_start": None, "moved": None, "structure": None}
