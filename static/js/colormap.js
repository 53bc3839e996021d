/** Colour maps as 256-entry lookup tables of packed RGBA (Uint32, little-endian), plus a colour bar. */

import { setText } from './dom.js';

// ColorBrewer RdBu, reversed: dark blue (most negative) .. near-white (zero) .. dark red (most positive).
const DIVERGING = ['#053061', '#2166ac', '#4393c3', '#92c5de', '#d1e5f0', '#f7f7f7',
  '#fddbc7', '#f4a582', '#d6604d', '#b2182b', '#67001f'];

const hex = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
const pack = (r, g, b) => ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;

function ramp(stops) {
  const rgb = stops.map(hex);
  const lut = new Uint32Array(256);
  const css = [];
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (rgb.length - 1);
    const k = Math.min(rgb.length - 2, Math.floor(x));
    const f = x - k;
    const c = [0, 1, 2].map((j) => Math.round(rgb[k][j] + f * (rgb[k + 1][j] - rgb[k][j])));
    lut[i] = pack(c[0], c[1], c[2]);
    css.push(c);
  }
  return { lut, css };
}

/** Diverging map for signed values in [-1, 1]: index = (t + 1) * 127.5. */
export const diverging = ramp(DIVERGING);
/** Grey ramp for non-negative values in [0, 1] (feature maps, input images). */
export const grey = ramp(['#000000', '#ffffff']);

/** Packed RGBA of an opaque CSS hex colour. */
export function packHex(h) {
  const [r, g, b] = hex(h);
  return pack(r, g, b);
}

/** Packed RGBA of three bytes. */
export const packRGB = pack;

/** Index into the diverging LUT for t in [-1, 1] (clamped). */
export function divIndex(t) {
  const i = (t + 1) * 127.5;
  return i <= 0 ? 0 : i >= 255 ? 255 : i | 0;
}

/** Index into a sequential LUT for t in [0, 1] (clamped). */
export function seqIndex(t) {
  const i = t * 255;
  return i <= 0 ? 0 : i >= 255 ? 255 : i | 0;
}

/** Format a number compactly for labels: 3 significant digits, exponent when tiny or huge. */
export function fmt(x) {
  if (x === 0) return '0';
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a < 1e-3 || a >= 1e4) return x.toExponential(2).replace(/\.?0+e/, 'e');
  const s = a >= 1000 ? String(Math.round(x)) : x.toPrecision(3);
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

/** A horizontal colour bar with the value range under it. */
export class ColorBar {
  constructor(container) {
    this.root = document.createElement('div');
    this.root.className = 'colorbar';
    this.canvas = document.createElement('canvas');
    this.canvas.width = 256;
    this.canvas.height = 1;
    this.labels = document.createElement('div');
    this.labels.className = 'colorbar-labels';
    this.root.append(this.canvas, this.labels);
    container.append(this.root);
    this.kind = null;
  }

  /** kind: 'diverging' | 'grey' | 'rgb'; range: the value at the ends. */
  set(kind, lo, hi, note = '') {
    if (kind !== this.kind) {
      this.kind = kind;
      const img = new ImageData(256, 1);
      const px = new Uint32Array(img.data.buffer);
      for (let i = 0; i < 256; i++) {
        px[i] = kind === 'grey' || kind === 'rgb' ? grey.lut[i] : diverging.lut[i];
      }
      this.canvas.getContext('2d').putImageData(img, 0, 0);
    }
    const mid = kind === 'grey' ? fmt((lo + hi) / 2) : '0';
    const texts = [fmt(lo), note ? `${mid} · ${note}` : mid, fmt(hi)];
    const key = texts.join('|');
    if (key === this.key) return; // unchanged labels: no DOM work
    this.key = key;
    if (this.labels.children.length !== texts.length) {
      this.labels.replaceChildren(...texts.map(() => document.createElement('span')));
    }
    texts.forEach((text, i) => setText(this.labels.children[i], text)); // only the labels that changed
  }
}
