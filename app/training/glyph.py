"""A picture of one hand-written or printed digit, shaped the way MNIST's digits were.

MNIST digits are white ink on black, scaled so the longer side of the glyph fills a 20 px box, and
centred by their centre of mass in 28x28. A person's photo is dark ink on uneven light paper, often
off-centre, sometimes with the desk around the sheet: `digit_glyph` decides which is ink, removes the
paper (following its uneven light) and the desk, widens thin pen strokes to MNIST's weight, and
crops, scales and centres the glyph.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

# Ink must stand this far (of 255) above the paper, over at least 0.1% of the picture, to count as
# a glyph; below it JPEG noise and paper texture would be blown up into a fake digit.
MIN_CONTRAST = 40.0
# MNIST strokes are about 3 px wide (2A/P of the pixels over 127); thinner pen strokes are widened to
# at least this before the final resize.
_MIN_STROKE = 2.5


def digit_glyph(grey: np.ndarray, size: int) -> tuple[np.ndarray, bool]:
    """A picture of one digit -> ((size, size) uint8 white-on-black MNIST-style glyph, inverted)."""
    g = grey.astype(np.float32)  # (H, W)
    inverted = _dark_on_light(g)
    paper = _paper(g, dark_ink=inverted)  # (H, W): follows uneven lighting
    clean = _ink(paper - g if inverted else g - paper)
    if clean is None:
        return np.zeros((size, size), dtype=np.uint8), inverted  # blank paper: an empty input
    top, bottom = _span(clean.sum(axis=1))
    left, right = _span(clean.sum(axis=0))
    glyph = _resize_glyph(clean[top:bottom, left:right], round(size * 20 / 28))
    return _centre(glyph, size), inverted


def _dark_on_light(g: np.ndarray) -> bool:
    """Whether the ink in a (H, W) picture is darker than its paper, judged on a thumbnail."""
    h, w = g.shape
    scale = min(1.0, 128 / max(h, w))  # tone and layout are all that matter here: 128 px is plenty
    thumb = Image.fromarray(g).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    small = np.asarray(thumb)  # (h, w) float32, longer side <= 128
    if float(np.median(small)) > 127.5:
        return True  # light paper fills most of the picture (ink is sparse)
    h, w = small.shape
    if float(np.median(small[h // 4 : h - h // 4, w // 4 : w - w // 4])) <= 127.5:
        return False  # dark all over: light strokes on a dark ground, as in MNIST or a canvas
    # Light in the middle, dark around: a sheet of paper on a desk, or a bold light digit on black.
    # A sheet fills most of its bounding box even when tilted; strokes do not (at most 0.78 in MNIST).
    bright = small > _otsu(small)
    top, bottom = _span(bright.sum(axis=1).astype(np.float64), trim=0.01)
    left, right = _span(bright.sum(axis=0).astype(np.float64), trim=0.01)
    return float(bright[top:bottom, left:right].mean()) > 0.8


def _ink(diff: np.ndarray) -> np.ndarray | None:
    """(H, W) ink-above-paper levels -> (H, W) ink in 0..1 with paper noise and desk removed, or None."""
    ink = np.clip(diff, 0.0, None)
    if float(np.percentile(ink, 99.9)) < MIN_CONTRAST:
        return None
    threshold = max(_otsu(ink), MIN_CONTRAST / 2)
    mask = ink > threshold
    low, high = threshold / 2, float(np.percentile(ink[mask], 90))
    clean = np.clip((ink - low) / max(high - low, 1.0), 0.0, 1.0)  # faint paper noise -> 0
    # Flood through faint ink too, so the blurred rim of the desk goes with it.
    return np.where(_edge_blobs(mask, clean > 0), 0.0, clean)


def _paper(g: np.ndarray, *, dark_ink: bool) -> np.ndarray:
    """A smooth (H, W) estimate of the paper's level around the ink, for uneven lighting."""
    h, w = g.shape
    block = max(16, math.ceil(max(h, w) / 8))
    gh, gw = math.ceil(h / block), math.ceil(w / block)
    padded = np.pad(g, ((0, gh * block - h), (0, gw * block - w)), mode="edge")
    blocks = padded.reshape(gh, block, gw, block).transpose(0, 2, 1, 3).reshape(gh, gw, -1)
    # Ink covers < 80% of a block; a thick stroke can fill one, and then its neighbours hold the paper's level.
    grid = np.percentile(blocks, 80 if dark_ink else 20, axis=2).astype(np.float32)  # (gh, gw)
    ring = np.pad(grid, 1, mode="edge")
    grid = (np.max if dark_ink else np.min)([ring[y : y + gh, x : x + gw] for y in range(3) for x in range(3)], axis=0)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BILINEAR))


def _edge_blobs(mask: np.ndarray, support: np.ndarray) -> np.ndarray:
    """(H, W) bool: `support` joined to a long stretch of the edge by `mask` (a desk or the page's edge)."""
    h, w = mask.shape
    f = max(1, max(h, w) // 128)  # flood a coarse grid: a few hundred cheap numpy passes at most

    def coarse(a: np.ndarray) -> np.ndarray:  # (H, W) bool -> (ceil(H / f), ceil(W / f)): any ink per cell
        return np.asarray(Image.fromarray(a.astype(np.uint8) * 255).reduce(f)) > 0  # mean > 0: any

    nothing = np.zeros((h, w), dtype=bool)
    cells = coarse(support)
    rim = np.ones_like(cells)
    rim[1:-1, 1:-1] = False
    if (coarse(mask) & rim).sum() < 0.1 * rim.sum():
        return nothing  # a stroke that merely reaches the edge (a tight crop) is part of the digit
    reached = cells & rim
    while True:
        grown = reached.copy()  # 3x3 dilation as two 1-D passes, then kept inside the ink
        grown[1:] |= reached[:-1]
        grown[:-1] |= reached[1:]
        wide = grown.copy()
        grown[:, 1:] |= wide[:, :-1]
        grown[:, :-1] |= wide[:, 1:]
        grown &= cells
        if np.array_equal(grown, reached):
            break
        reached = grown
    edge = np.repeat(np.repeat(reached, f, axis=0), f, axis=1)[:h, :w]
    return edge if (mask & ~edge).sum() >= max(16, 0.001 * h * w) else nothing  # all edge: keep it


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of values in 0..255: the cut that best separates two brightness classes."""
    hist = np.bincount(np.clip(values, 0, 255).astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    weight = np.cumsum(hist)  # pixels at or below each cut
    mass = np.cumsum(hist * levels)
    total, total_mass = weight[-1], mass[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mass * weight - total * mass) ** 2 / (weight * (total - weight))
    return float(np.nanargmax(np.nan_to_num(between, nan=-1.0, posinf=-1.0)))


def _span(profile: np.ndarray, trim: float = 0.005) -> tuple[int, int]:
    """[start, stop) holding all but `trim` of the ink mass at each end, so stray specks are ignored."""
    cumulative = np.cumsum(profile)
    total = cumulative[-1]
    start = int(np.searchsorted(cumulative, total * trim, side="right"))
    stop = int(np.searchsorted(cumulative, total * (1 - trim), side="left")) + 1
    return start, max(stop, start + 1)


def _resize_glyph(crop: np.ndarray, box: int) -> np.ndarray:
    """(h, w) 0..1 ink -> float (h', w') 0..255 whose longer side is `box`, strokes >= _MIN_STROKE px."""
    # Work at 4x the box: thin strokes can be measured and widened there before anti-aliasing down.
    h, w = crop.shape
    scale = 4 * box / max(h, w)
    filt = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
    mid = np.asarray(Image.fromarray(crop.astype(np.float32)).resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), filt))  # fmt: skip
    lit = mid[mid > 0.05]
    if not lit.size:
        return np.zeros((1, 1), dtype=np.float32)
    mid = np.clip(mid / float(np.percentile(lit, 90)), 0.0, 1.0)  # thin strokes faded by the resize: full again
    width = _stroke_width(mid > 0.5)
    if width < 4 * _MIN_STROKE:
        k = max(3, int(round(4 * _MIN_STROKE - width)) | 1)  # odd, as MaxFilter needs
        padded = Image.fromarray(np.pad(mid, k)).filter(ImageFilter.MaxFilter(k))
        mid = np.asarray(padded)
        rows, cols = np.nonzero(mid > 0.05)
        mid = mid[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = mid.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = Image.fromarray(np.ascontiguousarray(mid) * 255.0).resize(size, Image.Resampling.BOX)
    glyph: np.ndarray = np.clip(np.asarray(out), 0.0, 255.0)  # (h', w') float32
    return glyph


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a (H, W) bool mask: twice its area over its boundary length."""
    padded = np.pad(mask, 1)
    interior = mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    edge = int(mask.sum() - interior.sum())
    return 2.0 * float(mask.sum()) / edge if edge else 0.0


def _centre(glyph: np.ndarray, size: int) -> np.ndarray:
    """Paste a float (h, w) glyph into (size, size) uint8 with its centre of mass at the centre, as MNIST."""
    total = float(glyph.sum())
    out = np.zeros((size, size), dtype=np.float32)
    if total <= 0:
        return out.astype(np.uint8)
    ys, xs = np.indices(glyph.shape)
    cy, cx = float((ys * glyph).sum()) / total, float((xs * glyph).sum()) / total
    # Whole-pixel shift (crisp strokes) to size / 2: MNIST's own centres average (14.0, 14.0), spread +-0.5.
    oy, ox = round(size / 2 - cy), round(size / 2 - cx)
    h, w = glyph.shape
    y0, x0 = max(0, oy), max(0, ox)
    y1, x1 = min(size, oy + h), min(size, ox + w)
    out[y0:y1, x0:x1] = glyph[y0 - oy : y1 - oy, x0 - ox : x1 - ox]  # parts shifted off the edge are lost
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
