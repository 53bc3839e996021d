/**
 * The compare page's curves (uPlot), one colour per run: training loss per batch (smoothed), train and test
 * accuracy per epoch, and a layer's update ratio per batch. Each chart is rebuilt when the runs change and
 * fed new data as the runs train.
 */

import uPlot from '../../vendor/uplot/uPlot.esm.js';
import { level } from '../chartmarks.js';
import { fmt } from '../colormap.js';
import { requestDraw } from '../frame.js';
import { smooth } from '../smooth.js';

const EMA = 0.95; // loss smoothing: ~20 batches of memory, as on the run's own page
const EPOCH_TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

/** Steps 1..n of every run on one x axis (each run's step i sits at index i - 1). */
function alignSteps(runs, steps, pick) {
  const n = Math.max(0, ...runs.map((r) => steps[r.id]?.steps.length ?? 0));
  const x = Array.from({ length: n }, (_, i) => i + 1);
  const ys = runs.map((r) => {
    const s = steps[r.id];
    const values = s ? pick(s) : [];
    return x.map((_, i) => values[i] ?? null);
  });
  return [x, ys];
}

function label(run) { return run.label ?? run.id; }

export class CompareCharts {
  constructor(root, store) {
    this.store = store;
    this.boxes = {
      loss: root.querySelector('[data-role=loss]'),
      acc: root.querySelector('[data-role=acc]'),
      ratio: root.querySelector('[data-role=ratio]'),
    };
    this.log = root.querySelector('[data-role=log]');
    this.log.addEventListener('change', () => this.rebuild());
    this.ratioLayer = root.querySelector('[data-role=ratio-layer]');
    this.ratioLayer.addEventListener('change', () => {
      store.view.ratioLayer = this.ratioLayer.value;
      requestDraw(this);
    });
    this.charts = {};
    this.key = '';
    new ResizeObserver(() => {
      for (const [name, chart] of Object.entries(this.charts)) chart.setSize(this.size(name));
    }).observe(this.boxes.loss);
  }

  size(name) { return { width: Math.max(260, this.boxes[name].clientWidth), height: name === 'loss' ? 240 : 200 }; }

  update() {
    const key = this.store.runs.map((r) => r.id).join();
    if (key !== this.key) {
      this.key = key;
      const layers = this.store.runs[0]?.layers?.map((l) => l.name) ?? [];
      this.ratioLayer.replaceChildren(...layers.map((n) => new Option(n, n)));
      this.ratioLayer.value = this.store.view.ratioLayer ?? '';
      this.rebuild();
    }
    requestDraw(this);
  }

  rebuild() {
    for (const chart of Object.values(this.charts)) chart.destroy();
    this.charts = {};
    requestDraw(this);
  }

  make(name) {
    const { runs } = this.store;
    const series = runs.map((r, i) => ({
      label: label(r), stroke: this.store.color(i), width: 1.5, points: { show: false },
      value: (u, v) => (v === null || v === undefined ? '–' : fmt(v)),
    }));
    if (name === 'acc') {
      const both = runs.flatMap((r, i) => [
        { label: `${label(r)} test`, stroke: this.store.color(i), width: 2, points: { show: true, size: 6 },
          value: (u, v) => (v === null || v === undefined ? '–' : `${v.toFixed(1)}%`) },
        { label: `${label(r)} train`, stroke: this.store.color(i), width: 1, dash: [4, 3], points: { show: false },
          value: (u, v) => (v === null || v === undefined ? '–' : `${v.toFixed(1)}%`) },
      ]);
      return new uPlot({
        ...this.size(name), scales: { x: { time: false }, y: { range: [0, 100] } },
        // Epochs are whole numbers: ticks at 1, 2, 5, 10... of them, never at 1.5; percents as short numbers.
        axes: [{ label: 'epoch', size: 30, incrs: EPOCH_TICKS, values: (u, v) => v.map(String) },
          { values: (u, v) => v.map((t) => `${+t.toFixed(1)}%`), size: 54 }],
        series: [{ label: 'epoch' }, ...both],
      }, [[], ...both.map(() => [])], this.boxes[name]);
    }
    const chance = (u) => { // the loss of a uniform guess
      const classes = runs[0]?.classes?.length;
      if (name === 'loss' && classes > 1) level(u, Math.log(classes), 'y');
    };
    const log = name === 'ratio' || this.log.checked;
    if (name === 'loss') { // every batch, faint, under each run's smoothed line
      const raw = runs.map((r, i) => ({
        label: `${label(r)} per batch`, stroke: `${this.store.color(i)}40`, width: 1, points: { show: false },
        value: (u, v) => (v === null || v === undefined ? '–' : fmt(v)),
      }));
      series.unshift(...raw);
    }
    return new uPlot({
      ...this.size(name), hooks: { draw: [chance] },
      scales: { x: { time: false }, y: log ? { distr: 3 } : { range: (u, min, max) => [0, max > 0 ? max * 1.05 : 1] } },
      axes: [{ label: 'step', size: 30 },
        { label: name === 'loss' ? 'loss' : '‖ΔW‖/‖W‖', size: 58, values: (u, v) => v.map((t) => (t === null ? '' : fmt(t))) }],
      series: [{ label: 'step' }, ...series],
    }, [[], ...series.map(() => [])], this.boxes[name]);
  }

  draw() {
    const { runs, steps } = this.store;
    if (!runs.length) return;
    for (const name of ['loss', 'acc', 'ratio']) this.charts[name] ??= this.make(name);
    const log = this.log.checked;
    const [x, losses] = alignSteps(runs, steps, (s) => s.losses);
    const positive = (ys) => ys.map((v) => (log && !(v > 0) ? null : v));
    this.charts.loss.setData([x, ...losses.map(positive), ...losses.map((ys) => positive(smooth(ys, EMA)))]);
    const layer = this.store.view.ratioLayer;
    const [xr, ratios] = alignSteps(runs, steps, (s) => s.ratios?.[layer] ?? []);
    this.charts.ratio.setData([xr, ...ratios.map((ys) => smooth(ys, 0.9, true))]);
    const epochs = Math.max(0, ...runs.map((r) => r.history.length));
    const ex = Array.from({ length: epochs }, (_, i) => i + 1);
    const acc = runs.flatMap((r) => {
      const at = (key) => ex.map((e) => {
        const h = r.history.find((row) => row.epoch === e);
        return h && Number.isFinite(h[key]) ? 100 * h[key] : null;
      });
      return [at('test_accuracy'), at('train_accuracy')];
    });
    this.charts.acc.setData([ex, ...acc]);
  }

  /** The curves as CSV: per step each run's loss and its smoothed value; per epoch its accuracies. */
  csv(kind) {
    const { runs, steps } = this.store;
    if (kind === 'steps') {
      const [x, losses] = alignSteps(runs, steps, (s) => s.losses);
      const smoothed = losses.map((ys) => smooth(ys, EMA));
      const layers = runs[0]?.layers?.map((l) => l.name) ?? [];
      const ratios = layers.map((layer) => alignSteps(runs, steps, (s) => s.ratios?.[layer] ?? [])[1]);
      const head = ['step', ...runs.flatMap((r) => [`${r.id}_loss`, `${r.id}_smoothed`,
        ...layers.map((l) => `${r.id}_${l}_update_ratio`)])];
      const rows = x.map((step, i) => [step, ...runs.flatMap((r, k) => [losses[k][i], smoothed[k][i],
        ...layers.map((_, li) => ratios[li][k][i])])]);
      return [head, ...rows].map((row) => row.map((v) => (v === null || v === undefined ? '' : v)).join(',')).join('\n');
    }
    const head = ['run', 'epoch', 'step', 'train_loss', 'test_loss', 'test_accuracy', 'train_accuracy', 'lr', 'wall_time'];
    const rows = runs.flatMap((r) => r.history.map((h) => [r.id, ...head.slice(1).map((k) => h[k] ?? '')]));
    return [head, ...rows].map((row) => row.join(',')).join('\n');
  }
}
