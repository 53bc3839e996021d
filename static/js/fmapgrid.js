/**
 * Feature maps of several layers, one TileGrid per layer: the renderer shared by the live view and
 * the upload inspector. Non-negative maps (after ReLU) are grey, signed ones diverging.
 */

import { ColorBar, diverging, divIndex, grey, seqIndex } from './colormap.js';
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

/** Room for the grid inside a layer box (its padding: 10 px each side). */
const layerWidth = (w) => Math.max(60, w - 20);

export class FeatureMapLayers {
  /** opts: maxHeight per layer, onHover(layerIndex, mapIndex), onSelect(layerIndex, mapIndex), testid prefix. */
  constructor(container, opts = {}) {
    this.container = container;
    this.opts = { maxHeight: 200, maxZoom: 4, minZoom: 1, testid: 'fmap', ...opts };
    this.layers = [];
  }

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
      const [c, h, w] = layer.fmap.shape;
      title.innerHTML = `${layer.name} <span class="dims">${c} maps · ${h}×${w}</span>`;
      head.append(title);
      const bar = new ColorBar(head);
      section.append(head);
      const grid = new TileGrid(section, {
        gap: 1, maxZoom: this.opts.maxZoom, minZoom: this.opts.minZoom, maxHeight: this.opts.maxHeight, background: GAP,
        onHover: (i) => this.opts.onHover?.(li, i),
        onSelect: (i) => this.opts.onSelect?.(li, i),
      });
      grid.canvas.dataset.testid = `${this.opts.testid}-canvas-${li}`;
      this.container.append(section);
      return { shape: layer.fmap.shape.join(), grid, bar };
    });
  }

  /** Draw `layers` ([{name, fmap: NdArray}]); `selected` = {layer, index} outlines one map. */
  draw(layers, { perMap = false, selected = null, width = 0 } = {}) {
    if (layers.length !== this.layers.length || layers.some((l, i) => l.fmap.shape.join() !== this.layers[i].shape)) {
      this.build(layers);
    }
    const room = layerWidth(width || this.container.clientWidth || 300); // `width` spares a forced layout
    layers.forEach((layer, li) => {
      const { grid, bar } = this.layers[li];
      const [c, h, w] = layer.fmap.shape;
      if (grid.configure(c, w, h, room)) grid.clear();
      const { signed, max } = paintMaps(grid, layer.fmap, perMap);
      grid.commit();
      grid.select(selected && selected.layer === li ? selected.index : -1);
      bar.set(signed ? 'diverging' : 'grey', signed ? -max : 0, max, perMap ? 'each map scaled to its own max' : '');
    });
  }
}
