/** The filters panel: every conv layer's filters as a grid, showing W, dW or ΔW, with colour bars. */

import { ColorBar, fmt } from '../colormap.js';
import { requestDraw } from '../frame.js';
import { filterMaxAbs, paint, pixelIndex, stats, tileShape } from '../kernels.js';
import { TileGrid } from '../tilegrid.js';

export const MODES = {
  weight: { label: 'W', title: 'weights', help: 'Each tile is one filter: the small kernel of weights W a conv layer slides over its input. Blue is negative, white zero, red positive.' },
  grad: { label: 'dW', title: 'gradient', help: 'dW = dL/dW of the last batch: how the loss would grow if each weight grew. Training pushes W the other way.' },
  update: { label: 'ΔW', title: 'update', help: 'ΔW = W now − W at the previous snapshot: the optimizer moves W against dL/dW, scaled by the learning rate.' },
};

export class FiltersView {
  constructor(container, { store }) {
    this.store = store;
    this.root = container;
    this.help = container.querySelector('[data-role=help]');
    this.list = container.querySelector('[data-role=layers]');
    this.info = container.querySelector('[data-role=info]');
    this.modeButtons = [...container.querySelectorAll('[data-mode]')];
    this.scaling = container.querySelector('[data-role=per-filter]');
    for (const b of this.modeButtons) b.addEventListener('click', () => store.setView({ mode: b.dataset.mode }));
    this.scaling.addEventListener('change', () => store.setView({ perFilter: this.scaling.checked }));
    this.layers = [];
    this.hover = null;
    new ResizeObserver(() => this.relayout()).observe(this.list);
    this.reset();
  }

  reset() {
    this.list.replaceChildren();
    this.layers = [];
    this.snapshot = null;
    this.hover = null;
    this.info.textContent = 'Hover over a filter for its numbers; click one to open it.';
    this.list.innerHTML = '<p class="empty">Filters appear with the first snapshot.</p>';
  }

  /** state: the store (snapshot, view options, run config). */
  update(state) {
    if (state.snapshot !== this.snapshot) this.drawsSnapshot = true;
    this.snapshot = state.snapshot;
    this.view = { ...state.view };
    const ds = state.run && state.dataset(state.run.config?.dataset);
    this.channels = ds?.channels ?? 1;
    for (const b of this.modeButtons) b.setAttribute('aria-pressed', String(b.dataset.mode === this.view.mode));
    this.scaling.checked = this.view.perFilter;
    this.help.textContent = MODES[this.view.mode].help;
    requestDraw(this);
  }

  build(layers) {
    this.list.replaceChildren();
    this.layers = layers.map((layer, li) => {
      const section = document.createElement('section');
      section.className = 'layer';
      section.dataset.testid = `filters-${layer.name}`;
      const shape = layer.weight.shape;
      const rgb = li === 0 && shape[1] === 3 && this.channels === 3;
      const head = document.createElement('div');
      head.className = 'layer-head';
      const title = document.createElement('h3');
      title.textContent = `${layer.name}`;
      const dims = document.createElement('span');
      dims.className = 'dims';
      dims.textContent = `${shape[0]} filters · ${shape[1]}×${shape[2]}×${shape[3]}${rgb ? ' (RGB)' : ''}`;
      title.append(' ', dims);
      head.append(title);
      const bar = new ColorBar(head);
      section.append(head);
      const geo = tileShape(shape, rgb);
      const grid = new TileGrid(section, {
        gap: geo.gap, maxZoom: rgb || shape[1] === 1 ? 12 : 6, minZoom: 2, maxHeight: 300,
        onHover: (i) => this.onHover(li, i),
        onSelect: (i) => this.onSelect(li, i),
      });
      grid.canvas.dataset.testid = `filter-canvas-${li}`;
      this.list.append(section);
      return { name: layer.name, shape, rgb, geo, grid, bar, map: null };
    });
    this.relayout(false);
  }

  relayout(draw = true) {
    const width = this.list.clientWidth - 20; // a layer box has 10 px of padding each side
    if (width <= 0) return;
    for (const l of this.layers) {
      if (l.grid.configure(l.shape[0], l.geo.tileW, l.geo.tileH, width) || !l.map) {
        l.map = pixelIndex(l.grid, l.shape, l.rgb);
      }
    }
    if (draw && this.snapshot) requestDraw(this);
  }

  draw() {
    this.drawsSnapshot = false;
    const snap = this.snapshot;
    if (!snap) return;
    const shapesChanged = snap.layers.length !== this.layers.length
      || snap.layers.some((l, i) => l.weight.shape.join() !== this.layers[i].shape.join());
    if (shapesChanged) this.build(snap.layers);
    const { mode, perFilter, selected } = this.view;
    snap.layers.forEach((layer, li) => {
      const l = this.layers[li];
      if (!l.map) return;
      const arr = layer[mode];
      const values = arr.values();
      const [out, inCh, kh, kw] = arr.shape;
      const pf = perFilter ? filterMaxAbs(values, out) : null;
      const range = arr.maxAbs();
      paint(l.grid.pixels, l.map, values, {
        range, perFilter: pf, stride: inCh * kh * kw, rgbPlane: l.rgb ? kh * kw : 0,
      });
      l.grid.commit();
      l.grid.select(selected && selected.layer === li ? selected.index : -1);
      const note = perFilter ? 'each filter scaled to its own ±max' : '';
      l.bar.set(l.rgb ? 'rgb' : 'diverging', -range, range, note);
    });
    if (this.hover) this.showStats(...this.hover);
    else if (selected) this.showStats(selected.layer, selected.index);
  }

  onHover(li, i) {
    this.hover = i >= 0 ? [li, i] : null;
    const sel = this.view?.selected;
    if (this.hover) this.showStats(li, i);
    else if (sel) this.showStats(sel.layer, sel.index);
  }

  onSelect(li, i) {
    const sel = this.store.view.selected;
    const same = sel && sel.layer === li && sel.index === i;
    this.store.setView({ selected: same ? null : { layer: li, index: i } });
  }

  /** min/max/‖W‖ of one filter, and how much it moved since the previous snapshot. */
  showStats(li, i) {
    const layer = this.snapshot?.layers[li];
    if (!layer) return;
    const n = layer.weight.stride;
    const w = stats(layer.weight.values(), i * n, (i + 1) * n);
    const g = stats(layer.grad.values(), i * n, (i + 1) * n);
    const u = stats(layer.update.values(), i * n, (i + 1) * n);
    const rel = w.norm ? ` (${fmt((100 * u.norm) / w.norm)}% of ‖W‖)` : '';
    this.info.textContent = `${layer.name} #${i}: W from ${fmt(w.min)} to ${fmt(w.max)}, ‖W‖ ${fmt(w.norm)}`
      + ` · ‖dW‖ ${fmt(g.norm)} · moved ‖ΔW‖ ${fmt(u.norm)}${rel} since the last snapshot`;
  }
}
