/**
 * What a filter detects, drawn: its top test-set patches (the receptive fields of its strongest responses, cut
 * from the real test images, with a little dimmed context when the field is small) as a 3x3 mosaic in one tile, with its health on the tile's frame: red and crossed
 * when it is dead, orange when another filter of its layer is a near-duplicate.
 */

import { packHex, packRGB as pack } from './colormap.js';
import { GAP } from './kernels.js';

export const SIDE = 3; // patches per side of a mosaic: the server sends up to 9
export const DEAD = packHex('#ef4444');
export const DUPLICATE = packHex('#f59e0b');
const EMPTY = packHex('#22262c'); // a cell with no patch, and what a crop clipped at the border leaves

/**
 * Context around a small receptive field: a 5x5 crop of a digit is hard to read, so a cell shows a few pixels
 * of the image around the field, dimmed. Fields of 12 px and more fill their cell alone.
 */
export function contextMargin(rf) { return Math.max(0, Math.round((12 - rf) / 2)); }

/** Native side of one patch cell: the receptive field and its context. */
export function cellSize(rf) { return rf + 2 * contextMargin(rf); }

/** Native side of a mosaic tile for receptive field `rf`: three cells, 1 px between them, a 1 px frame. */
export function mosaicSize(rf) { return SIDE * cellSize(rf) + (SIDE - 1) + 2; }

/** The test set's pixels as GET /api/datasets/{name}/test.u8 sends them: uint8 (N, C, H, W). */
export class TestPixels {
  constructor(dataset, buffer, shape) {
    this.dataset = dataset;
    this.data = new Uint8Array(buffer);
    [this.count, this.channels, this.height, this.width] = shape;
    this.greys = Uint32Array.from({ length: 256 }, (_, v) => pack(v, v, v));
    this.dimGreys = Uint32Array.from({ length: 256 }, (_, v) => pack(...dim(v, v, v)));
  }

  /** Packed RGBA of pixel (y, x) of test image `index`; `dimmed` for context outside the field. */
  at(index, y, x, dimmed = false) {
    const { data, channels: c, height: h, width: w } = this;
    const plane = h * w;
    const i = index * c * plane + y * w + x;
    if (c === 1) return (dimmed ? this.dimGreys : this.greys)[data[i]];
    const rgb = [data[i], data[i + plane], data[i + 2 * plane]];
    return pack(...(dimmed ? dim(...rgb) : rgb));
  }
}

const dim = (r, g, b) => [r, g, b].map((v) => Math.round(34 + 0.3 * v)); // towards the empty cell's dark grey

/** Where the unclipped field starts along one axis, from its clipped [lo, hi) in an image of `size`. */
function fieldStart(lo, hi, rf, size) {
  const n = hi - lo;
  if (n >= rf || (lo > 0 && hi < size)) return lo;
  if (lo === 0 && hi === size) return -Math.floor((rf - n) / 2);
  return lo === 0 ? hi - rf : lo;
}

/**
 * Paint the receptive field `box` = [y0, x0, y1, x1] (ends exclusive, clipped at the border) of test image
 * `index` into a cellSize(rf) cell at (ox, oy) of `pixels` (an image `w` wide): the field at full brightness
 * in its place (a field clipped at the top sits low in its cell, as the filter sees it), its context dimmed.
 */
export function paintCrop(pixels, w, ox, oy, rf, test, index, box) {
  const [y0, x0, y1, x1] = box;
  const m = contextMargin(rf);
  const cell = rf + 2 * m;
  const top = fieldStart(y0, y1, rf, test.height) - m;
  const left = fieldStart(x0, x1, rf, test.width) - m;
  for (let cy = 0; cy < cell; cy++) {
    const y = top + cy;
    const row = (oy + cy) * w + ox;
    for (let cx = 0; cx < cell; cx++) {
      const x = left + cx;
      const inside = y >= 0 && y < test.height && x >= 0 && x < test.width;
      const field = y >= y0 && y < y1 && x >= x0 && x < x1;
      pixels[row + cx] = inside ? test.at(index, y, x, !field) : EMPTY;
    }
  }
}

/** One filter's mosaic (see TopFilterOut) into a mosaicSize(rf) tile at (ox, oy). */
export function paintMosaic(pixels, w, ox, oy, rf, filter, test) {
  const size = mosaicSize(rf);
  const cell = cellSize(rf);
  const frame = filter.dead ? DEAD : filter.duplicate_of !== null ? DUPLICATE : GAP;
  for (let y = 0; y < size; y++) pixels.fill(frame, (oy + y) * w + ox, (oy + y) * w + ox + size);
  for (let k = 0; k < SIDE * SIDE; k++) {
    const cx = ox + 1 + (k % SIDE) * (cell + 1);
    const cy = oy + 1 + Math.floor(k / SIDE) * (cell + 1);
    const patch = filter.patches[k];
    if (patch) paintCrop(pixels, w, cx, cy, rf, test, patch.index, patch.box);
    else for (let y = 0; y < cell; y++) pixels.fill(EMPTY, (cy + y) * w + cx, (cy + y) * w + cx + cell);
  }
  if (filter.dead) { // crossed out: it responds to nothing, so it learns nothing
    for (let i = 0; i < size; i++) {
      pixels[(oy + i) * w + ox + i] = DEAD;
      pixels[(oy + i) * w + ox + size - 1 - i] = DEAD;
    }
  }
}
