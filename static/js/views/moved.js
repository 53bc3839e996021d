/**
 * How far each conv layer has moved from its start, ‖W − W₀‖ / ‖W₀‖ at every snapshot (uPlot): the run's whole
 * history from GET /api/runs/{id}/measures, then each live frame's own measures as it comes. From a random
 * start every layer moves far; from a pretrained one (a fine-tuned run) the first layers barely move and the
 * change gathers in the last ones, the picture transfer learning is known by. A frozen layer stays at 0.
 */

import uPlot from '../../vendor/uplot/uPlot.esm.js';
import { api } from '../api.js';
import { momentStep, vertical } from '../chartmarks.js';
import { setText } from '../dom.js';
import { requestDraw } from '../frame.js';

const COLORS = ['#2563eb', '#ea580c', '#059669', '#7c3aed', '#db2777', '#0891b2'];
const RETRY_MS = 2000;

export class MovedView {
  constructor(container, { store }) {
    this.store = store;
    this.box = container.querySelector('[data-role=moved-chart]');
    this.summary = container.querySelector('[data-role=moved-summary]');
    new ResizeObserver(() => this.chart?.setSize(this.size())).observe(this.box);
    this.reset();
  }

  reset() {
    this.points = new Map(); // seq -> {step, moved: {layer: value}}
    this.names = [];
    this.loadedFor = null;
    this.cursorStep = null;
    this.chart?.destroy();
    this.chart = null;
    setText(this.summary, '');
    requestDraw(this);
  }

  /** The run's history, once per run and again when it ends (a resumed or followed run's gaps are filled). */
  update(state) {
    const run = state.run;
    if (!run?.id || !state.index.length) return;
    const key = `${run.id}:${state.isFinal}`;
    if (key === this.loadedFor) return;
    this.loadedFor = key;
    const id = run.id;
    api.measures(id).then((m) => {
      if (this.store.runId !== id) return;
      m.seq.forEach((seq, i) => {
        this.points.set(seq, { step: m.step[i], moved: Object.fromEntries(Object.entries(m.layers).map(
          ([name, s]) => [name, s.moved[i]])) });
      });
      requestDraw(this);
    }).catch(() => { // unreachable for a moment, or gone: the live frames still draw; ask again soon
      setTimeout(() => { if (this.loadedFor === key) this.loadedFor = null; }, RETRY_MS);
    });
  }

  /** A frame the page received live: its own measures, one point, drawn with the other charts (`redraw`). */
  frame(frame) {
    if (!frame?.layers || this.points.has(frame.seq)) return;
    this.points.set(frame.seq, { step: frame.step, moved: Object.fromEntries(frame.layers.map(
      (l) => [l.name, l.measures?.moved ?? null])) });
    this.pending = true;
  }

  /** Draw the points that came in since the last time (the stream's chart tick, at most every CHART_MS). */
  redraw() {
    if (!this.pending) return;
    this.pending = false;
    requestDraw(this);
  }

  moment(state) {
    this.say(state);
    const step = momentStep(state);
    if (step === this.cursorStep) return;
    this.cursorStep = step;
    this.chart?.redraw(false);
  }

  /** The moment shown, in words: each layer's distance from its start. */
  say(state) {
    const snap = state.snapshot;
    const layers = snap?.layers ?? [];
    if (!layers.length) return;
    const from = state.run?.transfer ? 'the pretrained start' : 'the random start';
    const parts = layers.map((l) => {
      const m = l.measures?.moved;
      const frozen = state.run?.config?.freeze?.includes(l.name) ? ' (frozen)' : '';
      return `${l.name} ${m === null || m === undefined ? '–' : m.toPrecision(2)}${frozen}`;
    });
    const text = `At step ${snap.step}, ‖W − W₀‖ / ‖W₀‖ from ${from}: ${parts.join(' · ')}.`;
    setText(this.summary, text);
  }

  size() { return { width: Math.max(240, this.box.clientWidth), height: 140 }; }

  make() {
    const freeze = new Set(this.store.run?.config?.freeze ?? []);
    return new uPlot({
      ...this.size(),
      hooks: { draw: [(u) => { if (this.cursorStep !== null) vertical(u, this.cursorStep); }] },
      scales: { x: { time: false }, y: { range: (u, min, max) => [0, Math.max(0.05, max ?? 0) * 1.05] } },
      axes: [{ label: 'step', size: 30, labelSize: 14 },
        { label: '‖W − W₀‖ / ‖W₀‖', labelSize: 14, size: 52 }],
      series: [{ label: 'step' }, ...this.names.map((name, i) => ({
        label: freeze.has(name) ? `${name} (frozen)` : name, stroke: COLORS[i % COLORS.length], width: 1.5,
        points: { show: false }, value: (u, v) => (v === null || v === undefined ? '–' : v.toPrecision(2)),
      }))],
    }, [[], ...this.names.map(() => [])], this.box);
  }

  draw() {
    const rows = [...this.points.values()].sort((a, b) => a.step - b.step);
    const names = [...new Set(rows.flatMap((r) => Object.keys(r.moved)))];
    if (!names.length) return;
    if (names.join() !== this.names.join()) {
      this.names = names;
      this.chart?.destroy();
      this.chart = null;
    }
    this.chart ??= this.make();
    this.chart.setData([rows.map((r) => r.step), ...names.map((n) => rows.map((r) => r.moved[n] ?? null))]);
  }
}
