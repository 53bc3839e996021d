/**
 * Feature maps of several layers, one TileGrid per layer: the renderer shared by the live view and
 * the upload inspector. Non-negative maps (after ReLU) are grey, signed ones diverging.
 */

import { ColorBar, diverging, divIndex, grey, seqIndex } from './colormap.js';
import { setText } from './dom.js';
import { GAP } from './kernels.js';
import { TileGrid } from './tilegrid.js';

/** Paint an (C, H, W) NdArray into a grid: maps scaled per layer, or each to its own range. */
export function paintMaps(grid, fmap, perMap) {
  const [count, h, w] = fmap.shape;
  const values = fmap.values();
  const n = h * w;
  const signed = fmap.min() < 0;
  const layerMax = fmap.maxAbs() || 1;
  const px = grid.pixels;
  const width = grid.image.width;
  for (let c = 0; c < count; c++) {
    let max = layerMax;
    if (perMap) {
      max = 0;
      for (let i = c * n; i < (c + 1) * n; i++) max = Math.max(max, Math.abs(values[i]));
      max = max || 1;
    }
    const inv = 1 / max;
    const [ox, oy] = grid.origin(c);
    for (let y = 0; y < h; y++) {
      let p = (oy + y) * width + ox;
      let i = c * n + y * w;
      for (let x = 0; x < w; x++, p++, i++) {
        px[p] = signed ? diverging.lut[divIndex(values[i] * inv)] : grey.lut[seqIndex(values[i] * inv)];
      }
    }
  }
  return { signed, max: layerMax };
}

/**
 * What a layer's maps can show: the conv's output before its ReLU (signed: what ReLU will remove is blue),
 * after it (only the positive part survives), and after the pooling that follows (each window keeps its
 * largest value, at a fraction of the size).
 */
export const STAGES = {
  before: { label: 'before ReLU', help: 'the conv output itself: blue where the pattern is absent (negative), which ReLU sets to zero' },
  after: { label: 'after ReLU', help: 'ReLU keeps the positive responses and zeroes the rest' },
  pooled: { label: 'after pooling', help: 'max pooling keeps the strongest response of each window: a smaller map that survives small shifts' },
};

/** Max (or average) pooling of an (C, H, W) array, as the network's pooling layer computes it. */
export function pool(fmap, { kind = 'max', size = 2, stride = 2 } = {}) {
  const [c, h, w] = fmap.shape;
  const oh = Math.floor((h - size) / stride) + 1;
  const ow = Math.floor((w - size) / stride) + 1;
  const src = fmap.values();
  const out = new Float32Array(c * oh * ow);
  let max = 0;
  for (let ch = 0, o = 0; ch < c; ch++) {
    const base = ch * h * w;
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++, o++) {
        let acc = kind === 'max' ? -Infinity : 0;
        for (let dy = 0; dy < size; dy++) {
          for (let dx = 0; dx < size; dx++) {
            const v = src[base + (y * stride + dy) * w + x * stride + dx];
            acc = kind === 'max' ? Math.max(acc, v) : acc + v / (size * size);
          }
        }
        out[o] = acc;
        max = Math.max(max, Math.abs(acc));
      }
    }
  }
  return { shape: [c, oh, ow], values: () => out, min: () => out.reduce((m, v) => Math.min(m, v), Infinity), maxAbs: () => max };
}

/** The array a layer shows at `stage` (falls back to the maps after ReLU where a stage does not apply). */
export function stageArray(layer, stage) {
  if (stage === 'before' && layer.preact) return layer.preact;
  if (stage === 'pooled' && layer.pool) {
    if (layer.pooledFrom !== layer.fmap) { // once per snapshot layer
      layer.pooledFrom = layer.fmap;
      layer.pooled = pool(layer.fmap, layer.pool);
    }
    return layer.pooled;
  }
  return layer.fmap;
}

/** Room for the grid inside a layer box (its padding: 10 px each side). */
const layerWidth = (w) => Math.max(60, w - 20);

export class FeatureMapLayers {
  /** opts: maxHeight per layer, onHover(layerIndex, mapIndex), onSelect(layerIndex, mapIndex), testid prefix,
   * stages (offer before ReLU / after / after pooling per layer, for frames that carry pre-activations). */
  constructor(container, opts = {}) {
    this.container = container;
    this.opts = { maxHeight: 200, maxZoom: 4, minZoom: 1, testid: 'fmap', stages: false, ...opts };
    this.layers = [];
    this.stages = {}; // layer name -> stage chosen, kept across snapshots and runs of the same model
    this.last = null;
  }

  /** The array layer `li` shows now. */
  shown(li) { return this.last ? stageArray(this.last[li], this.layers[li]?.stage ?? 'after') : null; }

  reset() {
    this.container.replaceChildren();
    this.layers = [];
  }

  build(layers) {
    this.reset();
    this.layers = layers.map((layer, li) => {
      const section = document.createElement('section');
      section.className = 'layer';
      const head = document.createElement('div');
      head.className = 'layer-head';
      const title = document.createElement('h3');
      const dims = document.createElement('span');
      dims.className = 'dims';
      title.append(`${layer.name} `, dims);
      head.append(title);
      const entry = { shape: layer.fmap.shape.join(), grid: null, bar: null, dims, stage: 'after', buttons: [] };
      if (this.opts.stages && layer.preact) {
        const group = document.createElement('div');
        group.className = 'segmented small';
        group.setAttribute('role', 'group');
        group.setAttribute('aria-label', `What ${layer.name}'s maps show`);
        entry.stage = this.stages[layer.name] ?? 'after';
        for (const [stage, { label, help }] of Object.entries(STAGES)) {
          if (stage === 'pooled' && !layer.pool) continue;
          const b = document.createElement('button');
          b.type = 'button';
          b.textContent = label;
          b.title = stage === 'pooled' ? `${help} (${layer.pool.size}×${layer.pool.size} ${layer.pool.kind}, stride ${layer.pool.stride})` : help;
          b.dataset.stage = stage;
          b.dataset.testid = `${this.opts.testid}-stage-${layer.name}-${stage}`;
          b.addEventListener('click', () => {
            entry.stage = this.stages[layer.name] = stage;
            if (this.last) this.draw(this.last, this.drawn);
          });
          entry.buttons.push(b);
          group.append(b);
        }
        head.append(group);
      }
      entry.bar = new ColorBar(head);
      section.append(head);
      const grid = new TileGrid(section, {
        gap: 1, maxZoom: this.opts.maxZoom, minZoom: this.opts.minZoom, maxHeight: this.opts.maxHeight, background: GAP,
        onHover: (i) => this.opts.onHover?.(li, i),
        onSelect: (i) => this.opts.onSelect?.(li, i),
      });
      grid.canvas.dataset.testid = `${this.opts.testid}-canvas-${li}`;
      this.container.append(section);
      entry.grid = grid;
      return entry;
    });
  }

  /** Draw `layers` ([{name, fmap: NdArray}]); `selected` = {layer, index} outlines one map. */
  draw(layers, options = {}) {
    const { perMap = false, selected = null, width = 0 } = options;
    if (layers.length !== this.layers.length || layers.some((l, i) => l.fmap.shape.join() !== this.layers[i].shape)
        || layers.some((l, i) => Boolean(l.preact) !== this.layers[i].buttons.length > 0 && this.opts.stages)) {
      this.build(layers);
    }
    this.last = layers;
    this.drawn = options;
    const room = layerWidth(width || this.container.clientWidth || 300); // `width` spares a forced layout
    layers.forEach((layer, li) => {
      const entry = this.layers[li];
      const { grid, bar } = entry;
      const arr = stageArray(layer, entry.stage);
      const [c, h, w] = arr.shape;
      if (entry.shown !== entry.stage) { // DOM writes only when the stage changes: not at every snapshot
        entry.shown = entry.stage;
        for (const b of entry.buttons) b.setAttribute('aria-pressed', String(b.dataset.stage === entry.stage));
        grid.canvas.dataset.stage = entry.stage;
      }
      const stage = entry.buttons.length ? ` · ${STAGES[entry.stage].label}` : '';
      const text = `${c} maps · ${h}×${w}${stage}`;
      setText(entry.dims, text);
      if (grid.configure(c, w, h, room)) grid.clear();
      const { signed, max } = paintMaps(grid, arr, perMap);
      grid.commit();
      grid.select(selected && selected.layer === li ? selected.index : -1);
      bar.set(signed ? 'diverging' : 'grey', signed ? -max : 0, max, perMap ? 'each map scaled to its own max' : '');
    });
  }
}
