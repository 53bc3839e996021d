/**
 * The kernel inspector: one filter opened up at the timeline's moment. This shell draws the filter's images (W at
 * step 0, W now, dW and ΔW per input channel, its feature map on the probe) and its summary, and feeds the views
 * beside them: the kernel's entries as numbers (kernelgrid.js), the update worked out (kernelupdate.js), the
 * convolution worked forward and backward at a pixel of its map (convolution.js), every entry and the norms
 * over the run (kernelhistory.js) and the filmstrip (kernelstrip.js). The input channel
 * shown and the entry picked are the inspector's own; the filter's history over the run comes from the store.
 */

import { ColorBar, fmt, grey, seqIndex } from '../colormap.js';
import { setHidden, setText } from '../dom.js';
import { requestDraw } from '../frame.js';
import { fromStart, GAP, paint, stats } from '../kernels.js';
import { TileGrid } from '../tilegrid.js';
import { ConvolutionView } from './convolution.js';
import { KernelGridView } from './kernelgrid.js';
import { KernelHistoryView } from './kernelhistory.js';
import { KernelStripView } from './kernelstrip.js';
import { KernelUpdateView } from './kernelupdate.js';

const PARTS = [
  ['start', 'W at step 0'],
  ['weight', 'W now'],
  ['grad', 'dW = dL/dW'],
  ['update', 'ΔW since last snapshot'],
];
const NAMES = { start: 'W at step 0', weight: 'W', grad: 'dW', update: 'ΔW' };

export class KernelView {
  constructor(container, { store, session }) {
    this.store = store;
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
    fcap.textContent = 'its feature map on the probe (click a pixel: worked below)';
    fbox.append(fcap);
    this.fmap = new TileGrid(fbox, {
      gap: 0, maxZoom: 12, maxHeight: 150, background: GAP, onSelect: (_i, at) => at && this.pickPixel(at),
    });
    this.fmap.canvas.dataset.testid = 'detail-fmap';
    this.fmapBar = new ColorBar(fbox);
    this.body.append(fbox);

    this.channelPick = $('channel');
    this.channelPick.addEventListener('change', () => {
      this.channel = Number(this.channelPick.value);
      this.entry = null;
      requestDraw(this);
    });
    const onPick = (entry) => {
      this.entry = this.entry === entry ? null : entry;
      requestDraw(this);
    };
    this.grid = new KernelGridView($('numbers'), { onPick });
    const onArrive = () => this.selected && requestDraw(this);
    this.worked = new KernelUpdateView($('worked'), { optimizers: store.boot.optimizers, onArrive });
    this.conv = new ConvolutionView($('convolution'), { onPick: (at) => this.pickPixel(at), onArrive });
    this.history = new KernelHistoryView($('history'), { onPick });
    this.strip = new KernelStripView($('strip'), { onSeek: (seq) => session.look(seq) });
    new ResizeObserver(() => this.selected && requestDraw(this)).observe(container);
    this.reset();
  }

  reset() {
    setHidden(this.root, true);
    this.snapshot = null;
    this.selected = null;
    this.selectedKey = null;
    this.channel = 0;
    this.entry = null;
    this.pixel = null; // the feature-map pixel worked out ({y, x}, from 0); null: the map's largest
    for (const view of [this.grid, this.worked, this.history, this.strip, this.conv]) view.reset();
  }

  /** A pixel of the filter's feature map picked: work the convolution out there. */
  pickPixel({ x, y }) {
    this.pixel = { y, x };
    requestDraw(this);
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
      this.pixel = null;
    }
    this.selected = sel;
    setHidden(this.root, !(sel && this.snapshot));
    if (this.root.hidden) return;
    const layer = this.snapshot.layers[sel.layer];
    if (layer) state.filterHistory(layer.name, sel.index); // asked again as a live run grows; drawn on arrival
    requestDraw(this);
  }

  draw() {
    const { snapshot: snap, selected: sel, store } = this;
    const layer = sel && snap?.layers[sel.layer];
    if (!layer) {
      setHidden(this.root, true);
      return;
    }
    const [, inCh, kh, kw] = layer.weight.shape;
    const n = inCh * kh * kw;
    const f = sel.index;
    this.title.textContent = `${layer.name} · filter #${f} · ${inCh} input channel${inCh > 1 ? 's' : ''} of `
      + `${kh}×${kw} · at step ${snap.step}`;
    this.drawImages(layer, sel, inCh, kh, kw, n, f);
    this.drawFmap(layer.fmap, f);
    setText(this.note, this.summary(layer, this.startOf(layer, sel.layer), f, n, inCh));
    if (this.channelPick.options.length !== inCh) {
      this.channelPick.replaceChildren(...Array.from({ length: inCh }, (_, c) => new Option(`input channel ${c}`, c)));
    }
    this.channelPick.value = String(this.channel);
    setHidden(this.channelPick, inCh < 2);
    const data = {
      layer, snapshot: snap, filter: f, channel: this.channel, entry: this.entry, run: store.run, index: store.index,
      history: store.knownFilterHistory(layer.name, f), runId: store.runId, pixel: this.pixel,
      following: store.cursor === null && store.status === 'running', // the live head, moving on
    };
    for (const view of [this.grid, this.worked, this.history, this.strip, this.conv]) view.update(data);
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
      setHidden(part.grid.root.parentElement, !values);
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
    setText(this.note, `input channel ${c}: ${NAMES[key]} from ${fmt(s.min)} to ${fmt(s.max)}, ‖·‖ ${fmt(s.norm)}`);
  }
}
