"""Procedural shapes drawn in numpy from a fixed seed: `shapes` (grey, 28x28) and `shapes-color` (RGB, 32x32).

Each shape is a signed distance field (negative inside, in pixels) turned into anti-aliased coverage, so the
whole set is a few vectorised numpy operations (0.1 to 0.5 s) instead of 7,500 drawing calls. Position, size,
stroke thickness and a small rotation are random; so are the colours in `shapes-color`, drawn independently of
the class, so that only geometry tells the classes apart and the first layer has to learn edges, not hues.
"""

from __future__ import annotations

import numpy as np

from .base import Dataset, DatasetInfo
from .registry import register

CLASSES = (
    "horizontal bar",
    "vertical bar",
    "diagonal bar /",
    "diagonal bar \\",
    "circle",
    "square",
    "triangle",
    "cross",
)
SEED = 1_234  # fixed: the same images in every process (across CPUs, at most a stray pixel level apart)
TRAIN_COUNT = 6_000
TEST_COUNT = 1_500
# Images drawn per batch of numpy work: ~6 MB of float32 per array for shapes-color, small enough for the
# allocator to reuse, which made generation 3x faster than one pass over all 6,000. Part of the seed's
# meaning: changing it changes the images.
CHUNK = 500
MAX_TILT = np.deg2rad(12)  # keeps "horizontal" (0 deg) and "diagonal" (45 deg) at least 21 degrees apart

# Base angle of each class; with y pointing down, -45 deg runs up and to the right ("/").
_ANGLE = np.deg2rad([0.0, 90.0, -45.0, 45.0, 0.0, 0.0, 0.0, 0.0])
# Distance from the centre to the farthest point of each shape, in units of its `r`, at the largest tilt:
# the shapes are scaled by it so that every class covers the same range of sizes on the image.
_SQRT3 = np.sqrt(3.0)
_EXTENT = np.array([1.0, 1.0, 1.0, 1.0, 1.0, np.cos(MAX_TILT) + np.sin(MAX_TILT), 2 / _SQRT3, 1.0])


def _box(u: np.ndarray, v: np.ndarray, half_u: np.ndarray, half_v: np.ndarray) -> np.ndarray:
    """Signed distance to an axis-aligned box centred on the origin (inigo quilez's sdBox)."""
    qu, qv = np.abs(u) - half_u, np.abs(v) - half_v
    outside = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0))
    distance: np.ndarray = outside + np.minimum(np.maximum(qu, qv), 0)
    return distance


def _triangle(u: np.ndarray, v: np.ndarray, half_side: np.ndarray) -> np.ndarray:
    """Signed distance to an equilateral triangle, apex up, centroid at the origin (iq's sdEquilateralTriangle)."""
    v = -v  # the formula has y pointing up; images have it pointing down
    u = np.abs(u) - half_side
    v = v + half_side / _SQRT3
    flip = u + _SQRT3 * v > 0  # fold the point into the region nearest the lower-left edge
    u, v = np.where(flip, (u - _SQRT3 * v) / 2, u), np.where(flip, (-_SQRT3 * u - v) / 2, v)
    u = u - np.clip(u, -2 * half_side, 0)
    distance: np.ndarray = -np.hypot(u, v) * np.sign(v)
    return distance


def _distance(label: int, u: np.ndarray, v: np.ndarray, r: np.ndarray, stroke: np.ndarray) -> np.ndarray:
    """Signed distance in pixels to shape `label`, drawn as strokes `stroke` wide; u, v are rotated offsets."""
    half = stroke / 2
    distance: np.ndarray
    if label <= 3:  # bars: the rotation in `u, v` already points them along their class's angle
        distance = _box(u, v, r, half)
    elif label == 4:
        distance = np.abs(np.hypot(u, v) - r) - half
    elif label == 5:
        distance = np.abs(_box(u, v, r, r)) - half
    elif label == 6:
        distance = np.abs(_triangle(u, v, r)) - half
    else:  # cross
        distance = np.minimum(_box(u, v, r, half), _box(u, v, half, r))
    return distance


def _column(values: np.ndarray) -> np.ndarray:
    """Per-image values (N, ...) as float32 (N, ..., 1, 1), to broadcast over an image's pixels."""
    return values.astype(np.float32)[..., None, None]


def _coverage(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased shape masks (N, H, W) in [0, 1] for `labels`, at random places, sizes and tilts."""
    n = len(labels)
    stroke = rng.uniform(0.06, 0.12, n) * size  # 1.7 to 3.4 px at 28
    reach = rng.uniform(0.24, 0.40, n) * size  # distance from centre to the farthest point of the shape
    margin = reach + stroke / 2 + 0.5
    cx = rng.uniform(margin, size - 1 - margin)  # pixel centres run from 0 to size - 1
    cy = rng.uniform(margin, size - 1 - margin)
    angle = _ANGLE[labels] + rng.uniform(-MAX_TILT, MAX_TILT, n)
    r = reach / _EXTENT[labels]

    # float32 for the pixel work: half the memory traffic of float64, and 8-bit images need nothing finer.
    grid = np.arange(size, dtype=np.float32)
    coverage = np.empty((n, size, size), dtype=np.float32)  # (N, H, W)
    for label in range(len(CLASSES)):
        rows = labels == label
        dx = grid[None, None, :] - _column(cx[rows])  # (n, 1, W)
        dy = grid[None, :, None] - _column(cy[rows])  # (n, H, 1)
        cos, sin = _column(np.cos(angle[rows])), _column(np.sin(angle[rows]))
        u = cos * dx + sin * dy  # (n, H, W): offsets in the shape's own frame
        v = cos * dy - sin * dx
        distance = _distance(label, u, v, _column(r[rows]), _column(stroke[rows]))
        # A pixel whose centre lies on the edge is half covered; one pixel further it is empty or full.
        coverage[rows] = np.clip(0.5 - distance, 0, 1)
    return coverage


def _smooth_noise(n: int, size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise (N, 3, H, W): a random `cells` x `cells` grid per channel, bilinearly enlarged."""
    knots = np.linspace(0, cells - 1, size)
    lower = np.minimum(knots.astype(int), cells - 2)
    frac = knots - lower
    weights = np.zeros((size, cells))  # (H, cells): linear interpolation as a matrix
    weights[np.arange(size), lower] = 1 - frac
    weights[np.arange(size), lower + 1] = frac
    weights = weights.astype(np.float32)
    grid = rng.standard_normal((n, 3, cells, cells), dtype=np.float32)
    return weights @ grid @ weights.T  # (N, 3, H, W)


def _noise(shape: tuple[int, ...], width: float, rng: np.random.Generator) -> np.ndarray:
    """Pixel noise, uniform in [-width/2, width/2): a quarter of the cost of Gaussian noise, and looks the same."""
    noise = rng.random(shape, dtype=np.float32)
    noise -= 0.5
    noise *= width
    return noise


def _grey(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """White shapes on black with a little sensor noise, (N, 1, H, W) in [0, 1]."""
    n = len(labels)
    brightness = _column(rng.uniform(0.75, 1.0, n))  # not all shapes pure white
    image: np.ndarray = _coverage(labels, size, rng) * brightness  # (N, H, W)
    image += _noise((n, size, size), 0.14, rng)
    np.clip(image, 0, 1, out=image)
    return image[:, None]


def _colour(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Shapes of a random colour on a random gradient with blotches, (N, 3, H, W) in [0, 1]."""
    n = len(labels)
    alpha = _coverage(labels, size, rng)[:, None]  # (N, 1, H, W)
    # Background: a linear gradient between two nearby colours in a random direction, plus smooth blotches.
    start = rng.uniform(0, 1, (n, 3))
    end = np.clip(start + rng.normal(0, 0.2, (n, 3)), 0, 1)
    direction = rng.uniform(0, 2 * np.pi, n)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    along = _column(np.cos(direction)) * ramp[None, None, :] + _column(np.sin(direction)) * ramp[None, :, None]
    along = (along + 0.71) / 1.42  # (N, H, W) in [0, 1]: 0.71 bounds the ramp's reach along a diagonal
    background = _column(start) + _column(end - start) * along[:, None]  # (N, 3, H, W)
    background += 0.08 * _smooth_noise(n, size, 5, rng)
    # Foreground: the first of 8 random colours far enough from the background's mean, else the farthest.
    # The choice depends on the background only, never on the label.
    candidates = rng.uniform(0, 1, (n, 8, 3))
    distance = np.linalg.norm(candidates - ((start + end) / 2)[:, None], axis=2)  # (N, 8)
    far = distance > 0.6
    pick = np.where(far.any(axis=1), far.argmax(axis=1), distance.argmax(axis=1))
    foreground = _column(candidates[np.arange(n), pick])  # (N, 3, 1, 1)
    image: np.ndarray = background * (1 - alpha)
    image += foreground * alpha
    image += _noise((n, 3, size, size), 0.1, rng)
    np.clip(image, 0, 1, out=image)
    return image


def generate(count: int, channels: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, C, H, W) uint8 and labels (N,) int64: balanced classes in random order, all from `seed`."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(CLASSES)).astype(np.int64)
    images = np.empty((count, channels, size, size), dtype=np.uint8)
    for start in range(0, count, CHUNK):
        chunk = labels[start : start + CHUNK]
        image = _grey(chunk, size, rng) if channels == 1 else _colour(chunk, size, rng)  # (n, C, H, W) in [0, 1]
        images[start : start + CHUNK] = np.rint(image * 255)
    return images, labels


def _make(info: DatasetInfo) -> Dataset:
    """Generate the train and test sets of `info` from separate seeds, so neither depends on the other's size."""
    x_train, y_train = generate(info.train_count, info.channels, info.size, seed=SEED)
    x_test, y_test = generate(info.test_count, info.channels, info.size, seed=SEED + 1)
    return Dataset(info=info, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


_DESCRIPTION = "Bars, circles, squares, triangles and crosses at random places, sizes and slight tilts"
_LICENCE = "Generated by filterscope (no third-party data)"

SHAPES = DatasetInfo(
    name="shapes",
    title="Shapes",
    description=f"{_DESCRIPTION}, white on black, 28x28 grey levels.",
    classes=CLASSES,
    channels=1,
    size=28,
    # Of the training images on the [0, 1] scale; tests/training/test_datasets.py recomputes them.
    mean=(0.1091,),
    std=(0.2462,),
    kind="shapes",
    licence=_LICENCE,
    train_count=TRAIN_COUNT,
    test_count=TEST_COUNT,
)

SHAPES_COLOR = DatasetInfo(
    name="shapes-color",
    title="Coloured shapes",
    description=f"{_DESCRIPTION}, in random colours on coloured, mottled backgrounds, 32x32 RGB.",
    classes=CLASSES,
    channels=3,
    size=32,
    # Of the training images on the [0, 1] scale; tests/training/test_datasets.py recomputes them.
    mean=(0.4990, 0.4973, 0.5031),
    std=(0.2914, 0.2925, 0.2902),
    kind="shapes",
    licence=_LICENCE,
    train_count=TRAIN_COUNT,
    test_count=TEST_COUNT,
)


@register(SHAPES)
def load_shapes() -> Dataset:
    """Generate `shapes`."""
    return _make(SHAPES)


@register(SHAPES_COLOR)
def load_shapes_color() -> Dataset:
    """Generate `shapes-color`."""
    return _make(SHAPES_COLOR)
