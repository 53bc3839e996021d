/**
 * The kernel inspector: one filter opened up at the timeline's moment. Its kernel's entries as numbers (W, dW
 * and ΔW per input channel), the update worked out for the run's optimizer, every entry over the whole run
 * (one line each, from the one-filter history API), its norms and cosine to step 0 over time, and a filmstrip
 * of the filter at every snapshot (click to go there).
 */

import { api } from '../api.js';
import { decodeFrame } from '../codec.js';
import { ColorBar, diverging, divIndex, fmt, grey, seqIndex } from '../colormap.js';
import { requestDraw } from '../frame.js';
import { fromStart, GAP, paint, stats } from '../kernels.js';
import { TileGrid } from '../tilegrid.js';

const PARTS = [
  ['start', 'W at step 0'],
  ['weight', 'W now'],
  ['grad', 'dW = dL/dW'],
  ['update', 'ΔW since last snapshot'],
];
const KINDS = [['weight', 'W'], ['grad', 'dW'], ['update', 'ΔW']];
const REFRESH_MS = 2000; // a live run's filter history is fetched again at most this often

const num = (x) => (Number.isFinite(x) ? (x === 0 ? '0' : Math.abs(x) < 1e-3 || Math.abs(x) >= 1e4
  ? x.toExponential(2) : x.toPrecision(3)) : '–');
const css = (value, range) => {
  const [r, g, b] = diverging.css[divIndex(range ? value / range : 0)];
  return `rgb(${r}, ${g}, ${b})`;
};

export class KernelView {
  constructor(container, { store, session }) {
    this.store = store;
    this.session = session;
    this.root = container;
    const $ = (role) => container.querySelector(`[data-role=${role}]`);
    this.title = $('title');
    this.body = $('body');
    this.note = $('note');
    $('close').addEventListener('click', () => store.setView({ selected: null }));
    this.parts = PARTS.map(([key, label]) => {
      const box = document.createElement('figure');
      box.className = 'detail-part';
      const cap = document.createElement('figcaption');
      cap.textContent = label;
      box.append(cap);
      const grid = new TileGrid(box, { gap: 1, maxZoom: 14, maxHeight: 170, onHover: (c) => this.onHover(key, c) });
      grid.canvas.dataset.testid = `detail-${key}`;
      const bar = new ColorBar(box);
      this.body.append(box);
      return { key, grid, bar };
    });
    const fbox = document.createElement('figure');
    fbox.className = 'detail-part';
    const fcap = document.createElement('figcaption');
    fcap.textContent = 'its feature map on the probe';
    fbox.append(fcap);
    this.fmap = new TileGrid(fbox, { gap: 0, maxZoom: 12, maxHeight: 150, background: GAP });
    this.fmapBar = new ColorBar(fbox);
    this.body.append(fbox);

    this.numbersBox = $('numbers');
    this.channelPick = $('channel');
    this.channelPick.addEventListener('change', () => {
      this.channel = Number(this.channelPick.value);
      this.entry = null;
      requestDraw(this);
    });
    this.workedText = $('worked');
    this.chart = $('chart');
    this.norms = $('norms');
    this.strip = $('strip');
    this.chart.addEventListener('click', (e) => this.pickLine(e));
    this.strip.addEventListener('click', (e) => this.pickFrame(e));
    new ResizeObserver(() => this.selected && requestDraw(this)).observe(container);
    this.reset();
  }

  reset() {
    this.root.hidden = true;
    this.snapshot = null;
    this.selected = null;
    this.history = null; // {key, header, arrays, at}
    this.channel = 0;
    this.entry = null;
  }

  update(state) {
    this.snapshot = state.snapshot;
    this.first = state.first;
    const sel = state.view.selected;
    const key = sel ? `${state.runId}:${sel.layer}:${sel.index}` : null;
    if (key !== this.selectedKey) {
      this.selectedKey = key;
      this.channel = 0;
      this.entry = null;
      this.history = null;
    }
    this.selected = sel;
    this.root.hidden = !(sel && this.snapshot);
    if (this.root.hidden) return;
    this.loadHistory(state);
    requestDraw(this);
  }

  /** The filter at every snapshot, in one request; again (throttled) while a live run grows past it. */
  loadHistory(state) {
    const layer = this.snapshot?.layers[this.selected.layer];
    if (!layer || !state.runId) return;
    const h = this.history;
    const behind = h && !h.loading && state.index.length > h.header.snapshots.length
      && performance.now() - h.at > REFRESH_MS;
    if (h && !behind) return;
    const key = this.selectedKey;
    const loading = { ...(h ?? {}), loading: true, at: performance.now() };
    this.history = h ? loading : { loading: true, at: performance.now(), header: { snapshots: [] } };
    api.trajectory(state.runId, layer.name, this.selected.index).then((buffer) => {
      if (key !== this.selectedKey) return;
      const frame = decodeFrame(buffer);
      this.history = { key, header: frame, arrays: frame, at: performance.now(), loading: false };
      requestDraw(this);
    }).catch(() => {
      if (key === this.selectedKey) this.history = { ...loading, loading: false };
    });
  }

  draw() {
    const { snapshot: snap, selected: sel } = this;
    const layer = sel && snap?.layers[sel.layer];
    if (!layer) {
      this.root.hidden = true;
      return;
    }
    const [, inCh, kh, kw] = layer.weight.shape;
    const n = inCh * kh * kw;
    const f = sel.index;
    this.title.textContent = `${layer.name} · filter #${f} · ${inCh} input channel${inCh > 1 ? 's' : ''} of `
      + `${kh}×${kw} · at step ${snap.step}`;
    this.drawImages(layer, sel, inCh, kh, kw, n, f);
    this.drawFmap(layer.fmap, f);
    this.note.textContent = this.summary(layer, this.startOf(layer, sel.layer), f, n, inCh);
    if (this.channelPick.options.length !== inCh) {
      this.channelPick.replaceChildren(...Array.from({ length: inCh }, (_, c) => new Option(`input channel ${c}`, c)));
    }
    this.channelPick.value = String(this.channel);
    this.channelPick.hidden = inCh < 2;
    this.drawNumbers(layer, f, n, kh, kw);
    this.workedText.textContent = this.worked(layer, f, n, kh, kw);
    this.drawHistory(kh, kw);
  }

  drawImages(layer, sel, inCh, kh, kw, n, f) {
    const width = Math.max(100, this.parts[0].grid.root.parentElement.clientWidth - 16);
    const start = this.startOf(layer, sel.layer);
    const arrays = { ...layer, start };
    const maxAbs = (values) => {
      const s = stats(values, 0, values.length);
      return Math.max(Math.abs(s.min), Math.abs(s.max));
    };
    const slice = (key) => arrays[key]?.values().subarray(f * n, (f + 1) * n);
    // W at step 0 and W now share one scale: a filter that grew from faint noise looks it.
    const wRange = Math.max(maxAbs(slice('weight')), start ? maxAbs(slice('start')) : 0) || 1;
    for (const part of this.parts) {
      const values = slice(part.key);
      part.grid.root.parentElement.hidden = !values;
      if (!values) continue;
      const { grid } = part;
      grid.configure(inCh, kw, kh, width);
      const map = this.channelMap(grid, inCh, kh, kw);
      const range = part.key === 'weight' || part.key === 'start' ? wRange : maxAbs(values) || 1;
      paint(grid.pixels, map, values, { range, stride: n });
      grid.commit();
      part.bar.set('diverging', -range, range);
    }
  }

  /** W, dW and ΔW of one input channel as matrices of numbers, each coloured on its own ±max. */
  drawNumbers(layer, f, n, kh, kw) {
    const c = this.channel;
    const tables = KINDS.map(([kind, label]) => {
      const values = layer[kind].values().subarray(f * n + c * kh * kw, f * n + (c + 1) * kh * kw);
      const s = stats(values, 0, values.length);
      const range = Math.max(Math.abs(s.min), Math.abs(s.max));
      const figure = document.createElement('figure');
      figure.className = 'numbers';
      const cap = document.createElement('figcaption');
      cap.textContent = label;
      const table = document.createElement('table');
      table.dataset.testid = `kernel-numbers-${kind}`;
      for (let y = 0; y < kh; y++) {
        const row = table.insertRow();
        for (let x = 0; x < kw; x++) {
          const i = y * kw + x;
          const cell = row.insertCell();
          const v = values[i];
          cell.textContent = num(v);
          cell.dataset.entry = String(i);
          cell.dataset.value = String(v);
          cell.style.background = css(v, range);
          cell.style.color = range && Math.abs(v / range) > 0.6 ? '#fff' : '#111';
          if (i === this.entry) cell.classList.add('picked');
          cell.title = `row ${y}, column ${x}: ${v}`;
          cell.addEventListener('click', () => {
            this.entry = this.entry === i ? null : i;
            requestDraw(this);
          });
        }
      }
      figure.append(cap, table);
      return figure;
    });
    this.numbersBox.replaceChildren(...tables);
  }

  /** The update rule with this run's numbers: worked for plain SGD from one batch to the next, else said. */
  worked(layer, f, n, kh, kw) {
    const run = this.store.run;
    const cfg = run?.config ?? {};
    const snap = this.snapshot;
    const index = this.store.index;
    const at = index.findIndex((r) => r.seq === snap.seq);
    const prev = at > 0 ? index[at - 1] : null;
    const batches = prev ? snap.step - prev.step : 0;
    const span = batches > 1 ? ` ΔW spans the ${batches} batches since the previous snapshot (step ${prev.step}).`
      : '';
    if (!prev || batches === 0) return 'ΔW is zero here: nothing trained between this snapshot and the one before.';
    const e = this.entry ?? Math.floor((kh * kw) / 2);
    const i = f * n + this.channel * kh * kw + e;
    const w = layer.weight.values()[i];
    const g = layer.grad.values()[i];
    const d = layer.update.values()[i];
    const lr = snap.lr;
    const wd = cfg.weight_decay ?? 0;
    const where = `entry (${Math.floor(e / kw)}, ${e % kw})`;
    if (cfg.optimizer === 'sgd' && batches === 1) {
      const before = w - d;
      const decay = wd ? ` + ${num(wd)} × ${num(before)}` : '';
      const predicted = before - lr * (g + wd * before);
      return `Plain SGD, one batch since the previous snapshot: W_next = W − lr × (dW${wd ? ' + weight decay × W' : ''}). `
        + `For ${where}: ${num(before)} − ${num(lr)} × (${num(g)}${decay}) = ${num(predicted)}; `
        + `the snapshot holds ${num(w)}.`;
    }
    if (cfg.optimizer === 'sgd') {
      return `Plain SGD: each batch moves W by −lr × dW of that batch (lr ${num(lr)} now).${span} `
        + `dW here is the last batch's only, so ΔW is not −lr × dW. For ${where}: ΔW ${num(d)}, dW ${num(g)}.`;
    }
    if (cfg.optimizer === 'momentum') {
      return 'SGD with momentum 0.9: each batch moves W by −lr × v, where v = 0.9 × v + dW sums past gradients, '
        + `so W keeps moving the way it has been going, not only against this batch's dW.${span} For ${where}: `
        + `ΔW ${num(d)}, dW ${num(g)}, lr ${num(lr)}.`;
    }
    return 'Adam gives every entry its own step: about lr × m / (√v + ε), where m and v are running averages of '
      + 'dW and dW², so each entry moves by up to about lr per batch whatever the size of its gradient, against '
      + `the gradient's recent direction. ΔW is therefore not proportional to dW.${span} For ${where}: `
      + `ΔW ${num(d)}, dW ${num(g)}, lr ${num(lr)}.`;
  }

  /** Lines of every entry of the channel over the run, norms and cosine to step 0, and the filmstrip. */
  drawHistory(kh, kw) {
    const h = this.history;
    const ready = h && h.arrays && h.arrays.weight;
    for (const canvas of [this.chart, this.norms, this.strip]) canvas.hidden = !ready;
    if (!ready) return;
    const refs = h.header.snapshots;
    const steps = refs.map((r) => r.step);
    const [, inCh] = h.arrays.weight.shape;
    const per = inCh * kh * kw;
    const w = h.arrays.weight.values();
    const u = h.arrays.update.values();
    const c = this.channel;
    const shownStep = this.snapshot.step;
    const series = [];
    for (let e = 0; e < kh * kw; e++) series.push(steps.map((_, s) => w[s * per + c * kh * kw + e]));
    this.lines = { steps, series };
    drawLines(this.chart, steps, series, { mark: shownStep, pick: this.entry, title: `W of input channel ${c}, each entry` });
    const norm = (arr, s) => Math.hypot(...arr.subarray(s * per, (s + 1) * per));
    const w0 = w.subarray(0, per);
    const cos = steps.map((_, s) => {
      const ws = w.subarray(s * per, (s + 1) * per);
      let dot = 0;
      for (let i = 0; i < per; i++) dot += ws[i] * w0[i];
      const d = norm(w, s) * norm(w, 0);
      return d ? dot / d : 0;
    });
    drawLines(this.norms, steps, [steps.map((_, s) => norm(w, s)), steps.map((_, s) => norm(u, s)), cos], {
      mark: shownStep, own: true, colors: ['#1d4ed8', '#ea580c', '#059669'],
      title: '‖W‖ (blue), ‖ΔW‖ (orange), cosine to step 0 (green), each on its own scale',
    });
    this.drawStrip(w, refs, per, kh, kw);
  }

  /** The channel's kernel at every snapshot, side by side on one scale; the moment shown is outlined. */
  drawStrip(w, refs, per, kh, kw) {
    const c = this.channel;
    const zoom = 4;
    const gap = 2;
    const tw = kw * zoom + gap;
    const canvas = this.strip;
    canvas.width = refs.length * tw;
    canvas.height = kh * zoom + 4;
    const ctx = canvas.getContext('2d');
    let range = 0;
    for (let s = 0; s < refs.length; s++) {
      for (let i = 0; i < kh * kw; i++) range = Math.max(range, Math.abs(w[s * per + c * kh * kw + i]));
    }
    const img = ctx.createImageData(canvas.width, canvas.height);
    const px = new Uint32Array(img.data.buffer);
    for (let s = 0; s < refs.length; s++) {
      for (let y = 0; y < kh * zoom; y++) {
        for (let x = 0; x < kw * zoom; x++) {
          const v = w[s * per + c * kh * kw + Math.floor(y / zoom) * kw + Math.floor(x / zoom)];
          px[(y + 2) * canvas.width + s * tw + x] = diverging.lut[divIndex(range ? v / range : 0)];
        }
      }
    }
    ctx.putImageData(img, 0, 0);
    const at = refs.findIndex((r) => r.seq === this.snapshot.seq);
    if (at >= 0) {
      ctx.strokeStyle = '#7c3aed';
      ctx.lineWidth = 2;
      ctx.strokeRect(at * tw - 1, 1, kw * zoom + 2, kh * zoom + 2);
    }
    canvas.style.width = `${canvas.width}px`;
    this.stripGeometry = { tw, refs };
  }

  pickFrame(e) {
    const g = this.stripGeometry;
    if (!g) return;
    const s = Math.floor(e.offsetX / g.tw);
    const ref = g.refs[s];
    if (ref) this.session.seek(ref.seq);
  }

  /** Click on the chart: the entry whose line passes nearest the click is picked (its cell is outlined). */
  pickLine(e) {
    const l = this.lines;
    if (!l) return;
    const { x0, x1, y0, y1, lo, hi } = this.chart.plot ?? {};
    if (x1 === undefined) return;
    const sx = e.offsetX * (this.chart.width / this.chart.clientWidth);
    const sy = e.offsetY * (this.chart.height / this.chart.clientHeight);
    const step = l.steps[0] + ((sx - x0) / (x1 - x0)) * (l.steps[l.steps.length - 1] - l.steps[0]);
    let s = 0;
    while (s < l.steps.length - 1 && l.steps[s + 1] <= step) s++;
    let best = null;
    let bestDist = Infinity;
    l.series.forEach((values, i) => {
      const y = y1 - ((values[s] - lo) / (hi - lo || 1)) * (y1 - y0);
      if (Math.abs(y - sy) < bestDist) {
        bestDist = Math.abs(y - sy);
        best = i;
      }
    });
    this.entry = best === this.entry ? null : best;
    requestDraw(this);
  }

  startOf(layer, li) {
    const w0 = this.first?.layers[li]?.weight;
    return w0 && w0.size === layer.weight.size ? w0 : null;
  }

  summary(layer, start, f, n, inCh) {
    const moved = start ? fromStart(layer.weight.values(), start.values(), f, n) : null;
    const since = moved
      ? `Since step 0: cosine ${moved.cosine.toFixed(2)} (1 = still its random start), ‖W − W₀‖/‖W₀‖ ${fmt(moved.moved)}. `
      : '';
    const channels = inCh > 1 ? 'One kernel per input channel: the filter sums their responses. ' : '';
    return `${since}${channels}W at step 0 and W now share one scale; dW and ΔW are each scaled to their own ±max.`;
  }

  channelMap(grid, inCh, kh, kw) {
    const key = `${grid.image.width}x${grid.image.height}:${inCh}:${kh}:${kw}`;
    if (grid.mapKey === key) return grid.map;
    const w = grid.image.width;
    const map = new Int32Array(grid.pixels.length).fill(-1);
    for (let c = 0; c < inCh; c++) {
      const [ox, oy] = grid.origin(c);
      for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) map[(oy + y) * w + ox + x] = c * kh * kw + y * kw + x;
    }
    grid.mapKey = key;
    grid.map = map;
    return map;
  }

  drawFmap(fmap, f) {
    const [, h, w] = fmap.shape;
    const values = fmap.values().subarray(f * h * w, (f + 1) * h * w);
    this.fmap.configure(1, w, h, Math.max(100, this.fmap.root.parentElement.clientWidth - 16));
    const s = stats(values, 0, values.length);
    const hi = Math.max(s.max, 1e-12);
    const px = this.fmap.pixels;
    for (let i = 0; i < values.length; i++) px[i] = grey.lut[seqIndex(values[i] / hi)];
    this.fmap.commit();
    this.fmapBar.set('grey', 0, hi);
  }

  onHover(key, c) {
    const layer = this.snapshot?.layers[this.selected?.layer];
    if (!layer || c < 0) return;
    const [, inCh, kh, kw] = layer.weight.shape;
    const start = this.selected.index * inCh * kh * kw + c * kh * kw;
    const arr = key === 'start' ? this.startOf(layer, this.selected.layer) : layer[key];
    if (!arr) return;
    const s = stats(arr.values(), start, start + kh * kw);
    const names = { start: 'W at step 0', weight: 'W', grad: 'dW', update: 'ΔW' };
    this.note.textContent = `input channel ${c}: ${names[key]} from ${fmt(s.min)} to ${fmt(s.max)}, ‖·‖ ${fmt(s.norm)}`;
  }
}

/** A small line chart on a canvas: one line per series over `xs`, a mark at x = `mark`, `pick` drawn bold.
 * `own`: each series scaled to its own range (shapes over time, not magnitudes). */
function drawLines(canvas, xs, series, { mark = null, pick = null, own = false, colors = null, title = '' }) {
  const dpr = devicePixelRatio || 1;
  const width = Math.max(200, canvas.clientWidth || canvas.parentElement.clientWidth - 16);
  const height = 150;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.height = `${height}px`;
  canvas.title = title;
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const pad = { l: 44 * dpr, r: 8 * dpr, t: 8 * dpr, b: 18 * dpr };
  const x0 = pad.l;
  const x1 = canvas.width - pad.r;
  const y0 = pad.t;
  const y1 = canvas.height - pad.b;
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of series) for (const v of s) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (!(hi > lo)) { hi = lo + 1; }
  const xMin = xs[0];
  const xMax = xs[xs.length - 1] || 1;
  const X = (x) => x0 + ((x - xMin) / (xMax - xMin || 1)) * (x1 - x0);
  canvas.plot = { x0, x1, y0, y1, lo, hi };
  ctx.font = `${10 * dpr}px system-ui, sans-serif`;
  ctx.fillStyle = '#64748b';
  if (!own) {
    ctx.fillText(fmt(hi), 2 * dpr, y0 + 8 * dpr);
    ctx.fillText(fmt(lo), 2 * dpr, y1);
    if (lo < 0 && hi > 0) {
      const zy = y1 - ((0 - lo) / (hi - lo)) * (y1 - y0);
      ctx.strokeStyle = '#cbd5e1';
      ctx.beginPath();
      ctx.moveTo(x0, zy);
      ctx.lineTo(x1, zy);
      ctx.stroke();
    }
  }
  ctx.fillText(`step ${xMin}`, x0, canvas.height - 4 * dpr);
  const endLabel = `${xMax}`;
  ctx.fillText(endLabel, x1 - ctx.measureText(endLabel).width, canvas.height - 4 * dpr);
  series.forEach((s, i) => {
    let sLo = lo;
    let sHi = hi;
    if (own) {
      sLo = Math.min(...s);
      sHi = Math.max(...s);
      if (!(sHi > sLo)) sHi = sLo + 1;
    }
    const Y = (v) => y1 - ((v - sLo) / (sHi - sLo)) * (y1 - y0);
    ctx.strokeStyle = colors ? colors[i % colors.length] : `hsl(${(i * 137.5) % 360}, 55%, 45%)`;
    ctx.globalAlpha = pick === null || pick === i || colors ? 1 : 0.25;
    ctx.lineWidth = (pick === i ? 3 : 1.2) * dpr;
    ctx.beginPath();
    s.forEach((v, k) => (k ? ctx.lineTo(X(xs[k]), Y(v)) : ctx.moveTo(X(xs[k]), Y(v))));
    ctx.stroke();
  });
  ctx.globalAlpha = 1;
  if (mark !== null) {
    ctx.strokeStyle = '#7c3aed';
    ctx.lineWidth = 2 * dpr;
    ctx.beginPath();
    ctx.moveTo(X(mark), y0);
    ctx.lineTo(X(mark), y1);
    ctx.stroke();
  }
}
