/**
 * Pixel maps for filter grids: which value each canvas pixel shows. Built once per layout, so a
 * redraw is one pass over the pixels with a colour lookup: no per-kernel bookkeeping per frame.
 */

import { diverging, divIndex, packHex, packRGB } from './colormap.js';

export const GAP = packHex('#3a3f47'); // between filters
export const INNER_GAP = packHex('#6b717b'); // between one filter's input-channel kernels

/** Columns of a mosaic of n kernels: a divisor of n a little wider than tall (32: 8x4), so no slot is empty. */
export function mosaicColumns(n) {
  const root = Math.sqrt(n);
  for (let c = Math.ceil(root); c <= 2 * root; c++) if (n % c === 0) return c;
  return Math.ceil(root);
}

/**
 * Tile geometry of a weight tensor (O, I, kh, kw): one tile per filter, its input channels as a
 * mosaic. Small kernels (3x3) sit edge to edge: 1-px lines between them would take half the tile.
 */
export function tileShape(shape, rgb) {
  const [, inCh, kh, kw] = shape;
  if (rgb || inCh === 1) return { tileW: kw, tileH: kh, mosaicCols: 1, inner: 0, gap: 1 };
  const inner = kh >= 5 || kw >= 5 ? 1 : 0;
  const mosaicCols = mosaicColumns(inCh);
  const mosaicRows = Math.ceil(inCh / mosaicCols);
  return {
    tileW: mosaicCols * (kw + inner) - inner, tileH: mosaicRows * (kh + inner) - inner, mosaicCols, inner, gap: 1 + inner,
  };
}

/**
 * For every pixel of the grid: the flat index of the value it shows, -1 for a gap between filters,
 * -2 for a gap inside a mosaic. For RGB tiles the index is the red value (green and blue follow).
 */
export function pixelIndex(grid, shape, rgb) {
  const [out, inCh, kh, kw] = shape;
  const { mosaicCols, inner } = tileShape(shape, rgb);
  const w = grid.image.width;
  const map = new Int32Array(grid.image.width * grid.image.height).fill(-1);
  const perFilter = inCh * kh * kw;
  const channels = rgb ? 1 : inCh;
  for (let f = 0; f < out; f++) {
    const [ox, oy] = grid.origin(f);
    for (let y = 0; y < grid.tileH; y++) map.fill(-2, (oy + y) * w + ox, (oy + y) * w + ox + grid.tileW);
    for (let c = 0; c < channels; c++) {
      const cx = ox + (c % mosaicCols) * (kw + inner);
      const cy = oy + Math.floor(c / mosaicCols) * (kh + inner);
      for (let y = 0; y < kh; y++) {
        for (let x = 0; x < kw; x++) map[(cy + y) * w + cx + x] = f * perFilter + c * kh * kw + y * kw + x;
      }
    }
  }
  return map;
}

/** Largest |value| of each filter (first axis), for per-filter scaling. */
export function filterMaxAbs(values, count) {
  const n = values.length / count;
  const out = new Float32Array(count);
  for (let f = 0; f < count; f++) {
    let m = 0;
    for (let i = f * n, end = i + n; i < end; i++) {
      const a = values[i] < 0 ? -values[i] : values[i];
      if (a > m) m = a;
    }
    out[f] = m || 1;
  }
  return out;
}

/**
 * Paint `values` through `map` into `pixels`: diverging colours, or RGB composites (grey = 0) when
 * `rgbPlane` (= kh*kw) is set. Scaling is symmetric: by `range` for the layer, or per filter by
 * `perFilter` (Float32Array of each filter's largest |value|).
 */
export function paint(pixels, map, values, { range, perFilter = null, stride, rgbPlane = 0 }) {
  const lut = diverging.lut;
  const inv = 1 / (range || 1);
  for (let p = 0; p < map.length; p++) {
    const i = map[p];
    if (i < 0) {
      pixels[p] = i === -1 ? GAP : INNER_GAP;
      continue;
    }
    const s = perFilter ? 1 / perFilter[(i / stride) | 0] : inv;
    if (rgbPlane) {
      const r = 127.5 + 127.5 * values[i] * s;
      const g = 127.5 + 127.5 * values[i + rgbPlane] * s;
      const b = 127.5 + 127.5 * values[i + 2 * rgbPlane] * s;
      pixels[p] = packRGB(r < 0 ? 0 : r > 255 ? 255 : r | 0, g < 0 ? 0 : g > 255 ? 255 : g | 0,
        b < 0 ? 0 : b > 255 ? 255 : b | 0);
    } else {
      pixels[p] = lut[divIndex(values[i] * s)];
    }
  }
}

/** min, max, L2 norm of values[start, end). */
export function stats(values, start, end) {
  let min = Infinity;
  let max = -Infinity;
  let sq = 0;
  for (let i = start; i < end; i++) {
    const v = values[i];
    if (v < min) min = v;
    if (v > max) max = v;
    sq += v * v;
  }
  return { min, max, norm: Math.sqrt(sq) };
}

/**
 * How far filter f (values[f*n, (f+1)*n)) has moved from the same filter at step 0: cosine similarity
 * (1: still its random start) and ‖W − W₀‖ / ‖W₀‖.
 */
export function fromStart(values, start, f, n) {
  let dot = 0;
  let a = 0;
  let b = 0;
  let d = 0;
  for (let i = f * n, end = i + n; i < end; i++) {
    dot += values[i] * start[i];
    a += values[i] * values[i];
    b += start[i] * start[i];
    d += (values[i] - start[i]) ** 2;
  }
  return { cosine: a && b ? dot / Math.sqrt(a * b) : 0, moved: b ? Math.sqrt(d / b) : 0 };
}
