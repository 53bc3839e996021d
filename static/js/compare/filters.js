/**
 * Each run's filters of one layer at the same moment, one row per run. With "match" on, every row after the
 * first is drawn in the order that pairs its filters with the first run's (GET /api/compare/match), with each
 * pair's cosine under its tile, and a tick under the first run's filters that every run learnt: alike in every row and,
 * in every row, moved from that run's own start (the server's `shared`: runs of one seed start alike, so a stalled
 * run's filters match one another without having learnt anything). One slider (by step or epoch) moves every row.
 */

import { ColorBar, fmt } from '../colormap.js';
import { requestDraw } from '../frame.js';
import { GAP, paint, pixelIndex, tileShape } from '../kernels.js';
import { TileGrid } from '../tilegrid.js';

const SHARED = 0.8; // the server's threshold for "one detector both runs learnt"

export class CompareFilters {
  /** load(id, seq): fetch a frame into the store; match(a, b, layer, seqA, seqB): a promise of the pairing. */
  constructor(root, store, { load, match }) {
    this.store = store;
    this.load = load;
    this.fetchMatch = match;
    this.matches = new Map(); // key -> answer (or a promise while in flight)
    this.rowsBox = root.querySelector('[data-role=rows]');
    this.slider = root.querySelector('[data-role=slider]');
    this.label = root.querySelector('[data-role=label]');
    this.layerSelect = root.querySelector('[data-role=layer]');
    this.align = root.querySelector('[data-role=align]');
    this.matchBox = root.querySelector('[data-role=match]');
    this.sharedBox = root.querySelector('[data-role=shared-scale]');
    this.playButton = root.querySelector('[data-role=play]');
    this.slider.addEventListener('input', () => store.setView({ at: Number(this.slider.value) }));
    this.layerSelect.addEventListener('change', () => store.setView({ layer: this.layerSelect.value }));
    this.align.addEventListener('change', () => store.setView({ align: this.align.value, at: 0 }));
    this.matchBox.addEventListener('change', () => store.setView({ match: this.matchBox.checked }));
    this.sharedBox.addEventListener('change', () => store.setView({ sharedScale: this.sharedBox.checked }));
    this.playButton.addEventListener('click', () => this.togglePlay());
    root.querySelector('[data-role=png]').addEventListener('click', (e) => {
      e.preventDefault();
      this.downloadPng();
    });
    this.rows = [];
    this.key = '';
    this.timer = null;
  }

  /** The moments the slider can take, in order (steps where some run has a snapshot, or epochs). */
  moments() {
    const { store } = this;
    if (store.view.align === 'epoch') return Array.from({ length: store.extent + 1 }, (_, i) => i);
    const steps = new Set([0]);
    for (const run of store.runs) for (const ref of store.index[run.id] ?? []) steps.add(ref.step);
    return [...steps].sort((a, b) => a - b);
  }

  togglePlay() {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = null;
      this.playButton.textContent = '▶ Play';
      return;
    }
    const moments = this.moments();
    let i = moments.findIndex((m) => m > this.store.view.at);
    if (i < 0) i = 0;
    this.playButton.textContent = '❚❚ Pause';
    this.timer = setInterval(() => { // the whole run in about 10 s
      if (i >= moments.length) {
        this.togglePlay();
        return;
      }
      this.store.setView({ at: moments[i++] });
    }, Math.max(30, 10_000 / Math.max(1, moments.length)));
  }

  build() {
    const { runs } = this.store;
    this.rowsBox.replaceChildren();
    this.rows = runs.map((run, i) => {
      const row = document.createElement('section');
      row.className = 'layer compare-row';
      row.dataset.testid = `compare-row-${i}`;
      const head = document.createElement('div');
      head.className = 'layer-head';
      const title = document.createElement('h3');
      title.style.borderLeft = `6px solid ${this.store.color(i)}`;
      title.style.paddingLeft = '6px';
      title.textContent = run.label ?? run.id;
      const dims = document.createElement('span');
      dims.className = 'dims';
      title.append(' ', dims);
      head.append(title);
      const bar = new ColorBar(head);
      const info = document.createElement('p');
      info.className = 'measures';
      info.dataset.testid = `compare-row-info-${i}`;
      row.append(head, info);
      const grid = new TileGrid(row, { gap: 1, maxZoom: 12, minZoom: 2, maxHeight: 220, background: GAP,
        onHover: (t) => this.hover(i, t) });
      grid.canvas.dataset.testid = `compare-canvas-${i}`;
      const sims = document.createElement('div');
      sims.className = 'sims';
      row.append(sims);
      this.rowsBox.append(row);
      return { run, grid, bar, dims, info, sims, map: null, shape: '', drawn: null };
    });
  }

  update() {
    const { store } = this;
    const key = store.runs.map((r) => r.id).join();
    if (key !== this.key) {
      this.key = key;
      const layers = store.runs[0]?.layers?.map((l) => l.name) ?? [];
      this.layerSelect.replaceChildren(...layers.map((n) => new Option(n, n)));
      this.build();
    }
    this.layerSelect.value = store.view.layer ?? '';
    this.align.value = store.view.align;
    this.matchBox.checked = store.view.match;
    this.sharedBox.checked = store.view.sharedScale;
    this.slider.max = String(store.extent);
    this.slider.value = String(store.view.at);
    const { align, at } = store.view;
    this.label.textContent = align === 'epoch' ? (at === 0 ? 'step 0, before training' : `end of epoch ${at} of ${store.extent}`)
      : `step ${at} of ${store.extent}`;
    for (const run of store.runs) { // fetch what the moment needs
      const ref = store.refAt(run.id);
      if (ref && !store.frame(run.id, ref.seq)) this.load(run.id, ref.seq);
    }
    requestDraw(this);
  }

  /** The pairing of run k's filters with the first run's at the moment shown (null until it arrives). */
  matchFor(k, refs) {
    const { store } = this;
    const a = store.runs[0];
    const b = store.runs[k];
    const key = `${a.id}:${refs[0].seq}:${b.id}:${refs[k].seq}:${store.view.layer}`;
    const known = this.matches.get(key);
    if (known && !(known instanceof Promise)) return known;
    if (!known) {
      const pending = this.fetchMatch(a.id, b.id, store.view.layer, refs[0].seq, refs[k].seq)
        .then((m) => { this.matches.set(key, m); requestDraw(this); })
        .catch((err) => { this.matches.set(key, { error: err.message }); requestDraw(this); });
      this.matches.set(key, pending);
    }
    return null;
  }

  draw() {
    const { store } = this;
    const name = store.view.layer;
    const refs = store.runs.map((r) => store.refAt(r.id));
    const layers = store.runs.map((r, i) => {
      const frame = refs[i] && store.frame(r.id, refs[i].seq);
      return frame?.layers.find((l) => l.name === name) ?? null;
    });
    const matching = store.view.match && store.runs.length > 1 && refs[0] && layers[0];
    const matches = store.runs.map((r, k) => (k > 0 && matching && refs[k] && layers[k] ? this.matchFor(k, refs) : null));
    const shared = layers[0] ? Array.from({ length: layers[0].weight.shape[0] }, (_, f) => matching
      && matches.slice(1).every((m) => m && !m.error && m.shared[f])) : [];
    const ranges = layers.map((l) => (l ? l.weight.maxAbs() : 0));
    const top = Math.max(0, ...ranges);
    this.rows.forEach((row, k) => {
      const layer = layers[k];
      const ref = refs[k];
      if (!layer || !ref) {
        row.info.textContent = ref ? 'loading…' : 'no snapshot yet';
        return;
      }
      const shape = layer.weight.shape;
      const rgb = shape[1] === 3 && store.runs[k].layers[0]?.name === name;
      const geo = tileShape(shape, rgb);
      const width = Math.max(200, this.rowsBox.clientWidth - 20);
      if (row.grid.configure(shape[0], geo.tileW, geo.tileH, width) || row.shape !== shape.join()) {
        row.map = pixelIndex(row.grid, shape, rgb);
        row.shape = shape.join();
      }
      const m = matches[k];
      const order = k > 0 && matching ? (m && !m.error ? m.permutation : null) : null;
      const values = order ? permute(layer.weight.values(), order, layer.weight.stride) : layer.weight.values();
      const range = store.view.sharedScale ? top : ranges[k];
      row.grid.clear();
      paint(row.grid.pixels, row.map, values, { range: range || 1, stride: layer.weight.stride, rgbPlane: rgb ? shape[2] * shape[3] : 0 });
      row.grid.commit();
      row.bar.set(rgb ? 'rgb' : 'diverging', -range, range, store.view.sharedScale ? 'all runs' : 'this run');
      row.dims.textContent = `${shape[0]} filters · step ${ref.step}${ref.epoch_end ? ` · end of epoch ${ref.epoch}` : ''}`;
      row.drawn = { order, sims: m && !m.error ? m.similarity : null };
      this.similarities(row, k, m, matching, shared);
    });
  }

  similarities(row, k, m, matching, shared) {
    const { grid } = row;
    row.sims.style.gridTemplateColumns = `repeat(${grid.cols}, ${(grid.tileW + 1) * grid.zoom}px)`;
    if (k === 0 || !matching) {
      const n = shared.filter(Boolean).length;
      row.info.textContent = k === 0 && matching ? `the reference: every other row is matched to this one · ${n} of `
        + `${shared.length} filters learnt by every run (✓)` : '';
      row.sims.replaceChildren(...(k === 0 && matching ? shared.map((on, i) => {
        const span = document.createElement('span');
        span.textContent = on ? '✓' : '·';
        span.title = on ? `filter #${i}: every run learnt a filter like it (cosine ≥ ${SHARED}, each moved from its start)`
          : `filter #${i}`;
        if (on) span.className = 'alike';
        return span;
      }) : []));
      return;
    }
    if (!m) {
      row.info.textContent = 'matching…';
      return;
    }
    if (m.error) {
      row.info.textContent = m.error;
      return;
    }
    const mean = m.similarity.reduce((a, b) => a + b, 0) / m.similarity.length;
    const n = m.shared.filter(Boolean).length;
    const still = m.moved_b.filter((on) => !on).length;
    row.info.textContent = `matched to the first run: mean cosine ${mean.toFixed(2)} · ${n} of ${m.shared.length} pairs `
      + `alike (≥ ${SHARED}) and learnt${still ? ` · ${still} of this run's filters still at their start` : ''}`;
    row.sims.replaceChildren(...m.similarity.map((s, i) => {
      const span = document.createElement('span');
      span.textContent = s.toFixed(2);
      span.title = `this row's filter #${m.permutation[i]} ↔ the first run's #${i}: cosine ${s.toFixed(3)}`;
      if (m.shared[i]) span.className = 'alike';
      else if (!m.moved_b[i]) span.className = 'unmoved';
      if (!m.moved_b[i]) span.title += ' · still at its random start (cosine ≥ 0.9 with its step 0)';
      return span;
    }));
  }

  hover(k, t) {
    const row = this.rows[k];
    if (!row?.drawn || t < 0) return;
    const own = row.drawn.order ? row.drawn.order[t] : t;
    const sim = row.drawn.sims ? ` · cosine ${fmt(row.drawn.sims[t])} with the first run's #${t}` : '';
    row.grid.canvas.title = `filter #${own}${sim}`;
  }

  /** Every row as one PNG: each row's label above its grid. */
  downloadPng() {
    const grids = this.rows.map((r) => r.grid.canvas);
    const width = Math.max(...grids.map((c) => c.width * 4), 200);
    const height = grids.reduce((h, c) => h + c.height * 4 + 24, 0);
    const out = document.createElement('canvas');
    out.width = width;
    out.height = height;
    const ctx = out.getContext('2d');
    ctx.fillStyle = '#1f2937';
    ctx.fillRect(0, 0, width, height);
    ctx.imageSmoothingEnabled = false;
    ctx.font = '14px system-ui, sans-serif';
    let y = 0;
    this.rows.forEach((r, i) => {
      ctx.fillStyle = this.store.color(i);
      ctx.fillText(`${r.run.label ?? r.run.id} · ${r.dims.textContent}`, 4, y + 17);
      y += 24;
      ctx.drawImage(r.grid.canvas, 0, y, r.grid.canvas.width * 4, r.grid.canvas.height * 4);
      y += r.grid.canvas.height * 4;
    });
    const a = document.createElement('a');
    a.href = out.toDataURL('image/png');
    a.download = `compare-${this.store.view.layer}-${this.store.view.align}${this.store.view.at}.png`;
    a.click();
  }
}

/** Filters in a new order: out[i] = values of filter order[i]. */
function permute(values, order, stride) {
  const out = new Float32Array(values.length);
  order.forEach((j, i) => out.set(values.subarray(j * stride, (j + 1) * stride), i * stride));
  return out;
}

