/**
 * The filters panel: every conv layer's filters as a grid, showing W, dW or ΔW, or what each detects (its top
 * test-set patches), now, at step 0 or both side by side, with a colour scale that can keep one range over the
 * whole run, how far each layer has moved, and its health (dead and near-duplicate filters).
 */

import { ColorBar, fmt } from '../colormap.js';
import { setAttr, setHidden, setProp, setText } from '../dom.js';
import { requestDraw } from '../frame.js';
import { filterMaxAbs, fromStart, paint, pixelIndex, stats, tileShape } from '../kernels.js';
import { mosaicSize, paintMosaic } from '../mosaic.js';
import { TileGrid } from '../tilegrid.js';

export const MODES = {
  weight: { label: 'W', title: 'weights', help: 'Each tile is one filter: the small kernel of weights W a conv layer slides over its input. Blue is negative, white zero, red positive.' },
  grad: { label: 'dW', title: 'gradient', help: 'dW = dL/dW of the last batch: how the loss would grow if each weight grew. Training pushes W the other way.' },
  update: { label: 'ΔW', title: 'update', help: 'ΔW = W now − W at the previous snapshot: the optimizer moves W against dL/dW, scaled by the learning rate. With colours "as W", ΔW is drawn on W\'s own scale: how big the step is next to the weights (at a tiny learning rate, nearly white).' },
  detects: { label: 'detects', title: 'what it detects', help: 'Each tile is one filter as the 9 test-image patches it responds to most (the part of the image its strongest response sees), from the analysis at step 0 or the latest epoch end at the moment shown. Red and crossed: dead (no positive response on the whole test set); orange: a near-duplicate of another filter (cosine of the weights above 0.95).' },
};
// Mosaics are larger than kernels: a smaller zoom, a taller grid (the kernel modes keep their own options);
// 820 px lets `tiny`'s 32 conv2 mosaics (46 px each) be drawn at 2x in a 460 px wide panel.
const DETECTS_GRID = { maxZoom: 8, minZoom: 1, maxHeight: 820 };

// What the health line's two counts mean for the layer (analysis.py: dead, and DUPLICATE_COSINE).
const HEALTH_MEANING = 'Dead: the filter responds positively to no test image, so after its ReLU it passes nothing on, '
  + 'no gradient comes back through it and it has stopped learning. Near-duplicate: its kernel has cosine above '
  + '0.95 with another filter of the layer, the same detector twice; both take up a filter that could detect '
  + 'something else.';

/** The colour scales, as the colour bar names them. */
export const SCALES = {
  run: "one scale for every moment: the run's largest |value| (so far, while it trains)",
  moment: 'scaled to this moment',
  filter: 'each filter scaled to its own ±max',
  weight: "on W's scale (the run's largest |W|): a ΔW as faint as it is small next to W, so the learning rate shows",
};

export class FiltersView {
  constructor(container, { store }) {
    this.store = store;
    this.root = container;
    this.help = container.querySelector('[data-role=help]');
    this.list = container.querySelector('[data-role=layers]');
    this.info = container.querySelector('[data-role=info]');
    this.modeButtons = [...container.querySelectorAll('[data-mode]')];
    this.showButtons = [...container.querySelectorAll('[data-show]')];
    this.scaling = container.querySelector('[data-role=scale]');
    this.npz = container.querySelector('[data-role=export-npz]');
    for (const b of this.modeButtons) b.addEventListener('click', () => store.setView({ mode: b.dataset.mode }));
    for (const b of this.showButtons) b.addEventListener('click', () => store.setView({ show: b.dataset.show }));
    this.scaling.addEventListener('change', () => store.setView({ scale: this.scaling.value }));
    this.layers = [];
    this.hover = null;
    // The inspector (views/kernel.js draws it) is opened from here: focused when it opens, and Escape or its ×
    // closes it with the keyboard back on the tile.
    this.detail = container.querySelector('#filter-detail');
    this.detail.tabIndex = -1;
    this.detail.querySelector('[data-role=close]').addEventListener('click', () => this.close());
    container.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && this.store.view.selected) {
        e.preventDefault();
        this.close();
      }
    });
    new ResizeObserver(() => this.relayout()).observe(this.list);
    this.reset();
  }

  reset() {
    this.list.replaceChildren();
    this.layers = [];
    this.snapshot = null;
    this.first = null;
    this.hover = null;
    this.info.textContent = 'Filters are numbered from #0, as in PyTorch (weight[0] is #0). Hover over one, or Tab '
      + 'to it, for its numbers; click it or press Enter to open it.';
    this.list.innerHTML = '<p class="empty">Filters appear with the first snapshot.</p>';
  }

  /** state: the store (snapshot, step 0, view options, run config). */
  update(state) {
    if (state.runId) this.npz.href = `/api/runs/${encodeURIComponent(state.runId)}/export/weights.npz`;
    if (state.snapshot !== this.snapshot) this.drawsSnapshot = true;
    this.snapshot = state.snapshot;
    this.first = state.first;
    const showChanged = this.view && (this.view.show !== state.view.show || this.view.mode !== state.view.mode);
    this.view = { ...state.view };
    this.state = state;
    const ds = state.run && state.dataset(state.run.config?.dataset);
    this.channels = ds?.channels ?? state.run?.config?.input?.[0] ?? 1; // a watched model: its own input
    // Called at every snapshot: write to the DOM only what changed (each write costs the page a style pass).
    const press = (b, on) => setAttr(b, 'aria-pressed', String(on));
    for (const b of this.modeButtons) press(b, b.dataset.mode === this.view.mode);
    for (const b of this.showButtons) press(b, b.dataset.show === this.view.show);
    if (this.scaling.value !== this.view.scale) this.scaling.value = this.view.scale;
    // A colour first layer is drawn in RGB, not blue-white-red: say so where the colours are explained.
    const help = MODES[this.view.mode].help + (this.view.mode === 'detects' ? this.costText(state.run) : '')
      + (this.channels === 3 && this.view.mode === 'weight'
        ? ' The first layer sees colour images: its tiles are drawn in RGB, each channel\'s weight from dark (−max) through grey (0) to bright (+max); a red tile wants red.'
        : '');
    setText(this.help, help);
    if (showChanged) this.relayout(false);
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
      // A watched model's deep layer is recorded in part, within the snapshot byte budget: say how.
      const sampled = this.state?.run?.layers?.find((l) => l.name === layer.name)?.sampled;
      if (sampled) {
        const channels = shape[1] < sampled.channels
          ? `, each with its first ${shape[1]} of ${sampled.channels} input channels` : '';
        dims.textContent += ` · sampled: the first ${shape[0]} of ${sampled.filters} filters${channels}`;
      }
      title.append(' ', dims);
      if (this.state?.run?.config?.freeze?.includes(layer.name)) {
        const frozen = document.createElement('span');
        frozen.className = 'frozen-badge';
        frozen.dataset.testid = `frozen-${layer.name}`;
        frozen.textContent = 'frozen';
        frozen.title = 'left out of the optimizer: its weights stay exactly as they started';
        title.append(' ', frozen);
      }
      const exports = document.createElement('span');
      exports.className = 'exports';
      const gif = document.createElement('a');
      gif.textContent = 'GIF';
      gif.title = `${layer.name}'s filters at every snapshot, as an animated GIF`;
      gif.href = `/api/runs/${encodeURIComponent(this.store.runId)}/export/filters.gif?layer=${encodeURIComponent(layer.name)}`;
      gif.download = `${this.store.runId}-${layer.name}.gif`;
      gif.dataset.testid = `export-gif-${layer.name}`;
      const png = document.createElement('a');
      png.textContent = 'PNG';
      png.href = '#';
      png.title = 'this grid as it is drawn now, as a PNG';
      png.dataset.testid = `export-png-${layer.name}`;
      png.addEventListener('click', (e) => {
        e.preventDefault();
        const canvas = this.layers[li]?.now.grid.canvas;
        if (!canvas) return;
        const a = document.createElement('a');
        a.href = canvas.toDataURL('image/png');
        a.download = `${this.store.runId}-${layer.name}-step${this.snapshot?.step ?? 0}.png`;
        a.click();
      });
      exports.append(gif, ' · ', png);
      head.append(title, exports);
      const bar = new ColorBar(head);
      const measures = document.createElement('p');
      measures.className = 'measures';
      measures.dataset.testid = `measures-${layer.name}`;
      const health = document.createElement('p');
      health.className = 'measures health';
      health.dataset.testid = `health-${layer.name}`;
      const warning = document.createElement('p');
      warning.className = 'layer-warning';
      warning.dataset.testid = `dead-warning-${layer.name}`;
      warning.hidden = true;
      section.append(head, measures, health, warning);
      const pair = document.createElement('div');
      pair.className = 'grid-pair';
      section.append(pair);
      const geo = tileShape(shape, rgb);
      const grids = ['start', 'now'].map((which) => {
        const figure = document.createElement('figure');
        figure.className = 'grid-figure';
        const caption = document.createElement('figcaption');
        figure.append(caption);
        pair.append(figure);
        const at = which === 'now' ? '' : ' at step 0';
        const grid = new TileGrid(figure, {
          gap: geo.gap, maxZoom: rgb || shape[1] === 1 ? 12 : 6, minZoom: 2, maxHeight: 300,
          onHover: (i) => this.onHover(li, i),
          onSelect: (i) => this.onSelect(li, i),
          onActivate: (i) => this.open(li, i),
          label: (i) => `${layer.name} filter #${i}${at}`,
          name: `${layer.name}'s ${shape[0]} filters${at}, numbered from #0: arrow keys move, Enter opens one`,
        });
        grid.canvas.dataset.testid = which === 'now' ? `filter-canvas-${li}` : `filter-start-canvas-${li}`;
        return { figure, caption, grid, map: null, kernelOpts: { ...grid.opts } };
      });
      this.list.append(section);
      return { name: layer.name, shape, rgb, geo, bar, measures, health, warning, start: grids[0], now: grids[1] };
    });
    this.relayout(false);
  }

  relayout(draw = true) {
    const both = this.view?.show === 'both';
    const full = this.list.clientWidth - 20; // a layer box has 10 px of padding each side
    if (full <= 0) return;
    const width = both ? Math.floor((full - 12) / 2) : full;
    this.gridWidth = width;
    if (this.view?.mode === 'detects') { // the mosaics' size is known from their analysis: laid out as drawn
      if (draw && this.snapshot) requestDraw(this);
      return;
    }
    for (const l of this.layers) {
      for (const part of [l.start, l.now]) {
        Object.assign(part.grid.opts, part.kernelOpts);
        if (part.grid.configure(l.shape[0], l.geo.tileW, l.geo.tileH, width) || !part.map) {
          part.map = pixelIndex(part.grid, l.shape, l.rgb);
        }
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
    const { mode, scale, show, selected } = this.view;
    const first = this.first && this.first.layers.length === snap.layers.length ? this.first : null;
    const onlyStart = show === 'start' && Boolean(first);
    const wantStart = show !== 'now' && Boolean(first);
    snap.layers.forEach((layer, li) => {
      const l = this.layers[li];
      this.showHealth(l, this.state?.top(this.state.analysisAt(snap.seq), layer.name));
      if (mode === 'detects') {
        this.drawDetects(l, snap, show);
        for (const part of [l.start, l.now]) part.grid.select(selected && selected.layer === li ? selected.index : -1);
        l.measures.textContent = this.measuresText(layer.measures, layer.name);
        return;
      }
      l.bar.root.hidden = false;
      if (!l.now.map) return;
      const arr = layer[mode];
      const w0 = first?.layers[li].weight;
      let range = this.range(layer, mode, arr, scale);
      let startRange = w0 ? this.range(layer, 'weight', w0, scale) : 0;
      if (show === 'both' && mode === 'weight') range = startRange = Math.max(range, startRange); // one scale
      setHidden(l.now.figure, onlyStart);
      setHidden(l.start.figure, !wantStart);
      if (!onlyStart) {
        this.paintGrid(l, l.now, arr, range, scale === 'filter');
        setText(l.now.caption, `${MODES[mode].label} at step ${snap.step}`);
      }
      if (wantStart) {
        this.paintGrid(l, l.start, w0, startRange, scale === 'filter');
        setText(l.start.caption, this.state?.run?.transfer ? 'W at step 0, its pretrained start'
          : 'W at step 0, its random start');
      }
      for (const part of [l.start, l.now]) part.grid.select(selected && selected.layer === li ? selected.index : -1);
      const barRange = onlyStart ? startRange : range;
      const kind = l.rgb && (onlyStart || mode === 'weight') ? 'rgb' : 'diverging';
      const whole = this.store.isLive ? 'whole run so far' : 'whole run'; // while training, its largest yet
      const note = { filter: 'per filter', run: whole, moment: 'now', weight: "W's scale" }[scale];
      l.bar.set(kind, -barRange, barRange, kind === 'rgb' ? `${note}, per channel` : note);
      setProp(l.bar.root, 'title', SCALES[scale]);
      setText(l.measures, this.measuresText(layer.measures, layer.name));
    });
    const tell = mode === 'detects' ? (a, b) => this.showDetects(a, b) : (a, b) => this.showStats(a, b);
    if (this.hover) tell(...this.hover);
    else if (selected) tell(selected.layer, selected.index);
  }

  /** Each filter as the mosaic of its top patches, at the moment shown (and at step 0, as `show` says). */
  drawDetects(l, snap, show) {
    const state = this.state;
    const now = state.analysisAt(snap.seq);
    const first = state.analyses[0] ?? null;
    const wantStart = show !== 'now' && first !== null;
    l.bar.root.hidden = true; // the patches are the images themselves: no colour scale
    l.start.figure.hidden = !wantStart;
    l.now.figure.hidden = show === 'start' && wantStart;
    const parts = [[l.now, now], ...(wantStart ? [[l.start, first]] : [])];
    for (const [part, seq] of parts) {
      const top = state.top(seq, l.name);
      const test = state.testPixels;
      if (!top || !test || test.dataset !== state.run?.config?.dataset) {
        part.caption.textContent = seq === null ? 'no analysis yet: one is made at step 0 and after every epoch'
          : 'loading what each filter detects…';
        continue;
      }
      const rf = top.receptive_field;
      const size = mosaicSize(rf);
      Object.assign(part.grid.opts, DETECTS_GRID);
      if (part.grid.configure(top.filters.length, size, size, this.gridWidth)) part.map = null;
      part.grid.clear();
      const w = part.grid.image.width;
      top.filters.forEach((f, i) => {
        const [ox, oy] = part.grid.origin(i);
        paintMosaic(part.grid.pixels, w, ox, oy, rf, f, test);
      });
      part.grid.commit();
      const behind = top.step !== snap.step ? ` (the latest analysis at or before step ${snap.step})` : '';
      part.caption.textContent = part === l.start ? `what each filter detects at step 0, its random start`
        : `what each filter detects at step ${top.step}${behind} · receptive field ${rf}×${rf} px`;
    }
  }

  /** Dead and near-duplicate filters counted under the layer's header; a warning when most of it is dead. */
  showHealth(l, top) {
    if (!top) {
      setText(l.health, '');
      setHidden(l.warning, true);
      return;
    }
    const n = top.filters.length;
    const positive = top.filters.reduce((sum, f) => sum + f.positive, 0) / Math.max(1, n);
    setText(l.health, `at step ${top.step}: ${top.dead} of ${n} filters dead · ${top.duplicates} near-duplicate`
      + ` · responses above zero: ${(100 * positive).toFixed(0)} % on average. ${HEALTH_MEANING}`);
    setHidden(l.warning, top.dead <= n / 2);
    // The other initial weights than the run's, as the server's 'dead' warning says (diagnose.py): never the ones chosen.
    const init = this.store.run?.config?.init;
    const other = {
      'small-first': ", or PyTorch's default initial weights,",
      small: ', or small initial weights in the first layer only,',
      default: ', or small initial weights in the first layer only,',
    }[init] ?? '';
    setText(l.warning, `Most of ${l.name} is dead: ${top.dead} of ${n} filters respond positively nowhere on`
      + ` the test set, so no gradient reaches them and they stop learning. A smaller learning rate${other} may`
      + ' keep more of them alive.');
  }

  /** What the analyses cost, as a share of the training time so far. */
  costText(run) {
    const seconds = run?.analysis_seconds;
    if (!seconds || !run.elapsed) return '';
    return ` The analyses cost ${seconds.toFixed(2)} s of ${run.elapsed.toFixed(1)} s of training `
      + `(${((100 * seconds) / run.elapsed).toFixed(1)} %).`;
  }

  /** The ±range the colours span: the run's largest |value| (over the whole run once it has ended, so far while it
   * trains), or this array's. */
  range(layer, kind, arr, scale) {
    // The whole run's largest |value| keeps faint early filters faint; older servers sent no peaks. Each frame's
    // peaks are the run's up to it: the newest frame's (the head's; an ended run's last holds the run's own) keep
    // one scale over a replay, where the moment shown's own would rescale every frame and hide the weights' growth.
    const head = this.store.head?.layers.find((h) => h.name === layer.name)?.peaks;
    const peak = (k) => Math.max(layer.peaks?.[k] ?? 0, head?.[k] ?? 0);
    if (scale === 'weight') return Math.max(peak('weight'), layer.weight.maxAbs()); // ΔW beside W
    return scale === 'run' ? Math.max(peak(kind), arr.maxAbs()) : arr.maxAbs();
  }

  paintGrid(l, part, arr, range, perFilter) {
    const [out, inCh, kh, kw] = arr.shape;
    const values = arr.values();
    paint(part.grid.pixels, part.map, values, {
      range, perFilter: perFilter ? filterMaxAbs(values, out) : null, stride: inCh * kh * kw, rgbPlane: l.rgb ? kh * kw : 0,
    });
    part.grid.commit();
  }

  /** The layer's line: how far its filters are from their start (a fine-tuned run's: the pretrained weights),
   * and how smooth they are; a frozen layer says so, since it never moves. */
  measuresText(m, name) {
    if (!m || m.moved === null) return '';
    const run = this.state?.run;
    const smooth = `smoothness ${fmt(m.structure)} (noise ≈ 0, strokes and edges ≈ 0.5+)`;
    if (run?.config?.freeze?.includes(name)) {
      return `frozen: the optimizer does not move it, so it stays its ${run.transfer ? 'pretrained' : 'random'} start · ${smooth}`;
    }
    const since = run?.transfer ? 'since the pretrained start (step 0)' : 'since step 0';
    const still = run?.transfer ? 'still the pretrained filter' : 'still its random start';
    return `${since}: ‖W − W₀‖ = ${fmt(m.moved)} × ‖W₀‖ · cosine to W₀ ${fmt(m.cosine_to_start)}`
      + ` (1 = ${still}) · ${smooth}`;
  }

  onHover(li, i) {
    this.hover = i >= 0 ? [li, i] : null;
    if (this.view?.mode === 'detects') {
      if (this.hover) this.showDetects(li, i);
      return;
    }
    const sel = this.view?.selected;
    if (this.hover) this.showStats(li, i);
    else if (sel) this.showStats(sel.layer, sel.index);
  }

  /** A click on a tile: open the filter in the inspector, or close it if it is the one open. */
  onSelect(li, i) {
    const sel = this.store.view.selected;
    const same = sel && sel.layer === li && sel.index === i;
    if (same) this.close();
    else this.open(li, i);
  }

  /** Open filter `i` of layer `li` in the inspector, and bring the inspector into view with the focus in it. */
  open(li, i) {
    this.store.setView({ selected: { layer: li, index: i } });
    // After the next frame has drawn it (frame.js draws in the first animation frame after the change).
    requestAnimationFrame(() => {
      if (this.detail.hidden) return;
      this.detail.focus({ preventScroll: true });
      const smooth = !matchMedia('(prefers-reduced-motion: reduce)').matches;
      this.detail.scrollIntoView({ block: 'nearest', behavior: smooth ? 'smooth' : 'auto' });
    });
  }

  /** Close the inspector; the keyboard goes back to the tile it was opened from. */
  close() {
    const sel = this.store.view.selected;
    if (!sel) return;
    const back = this.detail.contains(document.activeElement) || this.list.contains(document.activeElement);
    this.store.setView({ selected: null });
    const l = this.layers[sel.layer];
    const part = l && (l.now.figure.hidden ? l.start : l.now);
    if (back && part) {
      part.grid.rove(sel.index);
      part.grid.focus();
    }
  }

  /** What one filter responds to most, and its health. */
  showDetects(li, i) {
    const layer = this.snapshot?.layers[li];
    const top = layer && this.state?.top(this.state.analysisAt(this.snapshot.seq), layer.name);
    const f = top?.filters[i];
    if (!f) return;
    const best = f.patches.slice(0, 3).map((p) => `#${p.index} (${fmt(p.activation)})`).join(', ');
    const dup = f.duplicate_of !== null ? ` · near-duplicate of #${f.duplicate_of} (cosine ${f.similarity.toFixed(3)})` : '';
    this.info.textContent = `${layer.name} #${i} at step ${top.step}: `
      + (f.dead ? 'dead: no positive response anywhere on the test set' : `responds most to test images ${best}`)
      + ` · above zero at ${(100 * f.positive).toFixed(1)} % of positions${dup}`;
  }

  /** min/max/‖W‖ of one filter, how much it moved since the previous snapshot, and since step 0. */
  showStats(li, i) {
    const layer = this.snapshot?.layers[li];
    if (!layer) return;
    const n = layer.weight.stride;
    const w = stats(layer.weight.values(), i * n, (i + 1) * n);
    const g = stats(layer.grad.values(), i * n, (i + 1) * n);
    const u = stats(layer.update.values(), i * n, (i + 1) * n);
    const rel = w.norm ? ` (${fmt((100 * u.norm) / w.norm)}% of ‖W‖)` : '';
    const w0 = this.first?.layers[li]?.weight;
    const start = w0 && w0.size === layer.weight.size ? fromStart(layer.weight.values(), w0.values(), i, n) : null;
    const since = start ? ` · since step 0: cosine ${start.cosine.toFixed(2)}, ‖W − W₀‖/‖W₀‖ ${fmt(start.moved)}` : '';
    this.info.textContent = `${layer.name} #${i}: W from ${fmt(w.min)} to ${fmt(w.max)}, ‖W‖ ${fmt(w.norm)}`
      + ` · ‖dW‖ ${fmt(g.norm)} · moved ‖ΔW‖ ${fmt(u.norm)}${rel} since the last snapshot${since}`;
  }
}
