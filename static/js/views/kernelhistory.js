/**
 * In the kernel inspector, one input channel's kernel over the whole run (uPlot, from the filter's history in
 * the store): every entry of W as a line (click near one to pick that entry; the picked one is drawn bold), and
 * below ‖W‖, ‖ΔW‖ and the cosine of W to step 0, each on its own scale (their shapes over time, not their
 * magnitudes). Both mark the moment the timeline shows.
 */

import uPlot from '../../vendor/uplot/uPlot.esm.js';
import { vertical } from '../chartmarks.js';
import { fmt } from '../colormap.js';

const HEIGHT = 150; // CSS px of each chart: a 5×5 kernel's 25 lines stay apart
const NORMS = [['‖W‖', '#1d4ed8'], ['‖ΔW‖', '#ea580c'], ['cosine to step 0', '#059669']];
const AXIS = 64; // CSS px of the y axes (room for '-1.23e-4'), the same on both charts so that their steps line up
const FADED = 0.25; // opacity of the other entries' lines while one is picked
const entryColor = (i) => `hsl(${(i * 137.5) % 360}, 55%, 45%)`; // golden-angle hues: neighbours differ
const value = (u, v) => (v === null || v === undefined ? '–' : fmt(v));

/** The 2-norm of values[from, to). */
function norm(values, from, to) {
  let sum = 0;
  for (let i = from; i < to; i++) sum += values[i] * values[i];
  return Math.sqrt(sum);
}

export class KernelHistoryView {
  /** container holds [data-role=chart] (the entries) and [data-role=norms]; onPick(entry) on a click. */
  constructor(container, { onPick }) {
    this.root = container;
    this.chartBox = container.querySelector('[data-role=chart]');
    this.normsBox = container.querySelector('[data-role=norms]');
    this.onPick = onPick;
    this.reset();
  }

  reset() {
    this.chart?.destroy();
    this.norms?.destroy();
    this.chart = null;
    this.norms = null;
    this.count = 0; // the entries' chart's number of lines (kh × kw)
    this.mark = null; // the step of the moment shown
    this.root.hidden = true;
  }

  width() { return Math.max(200, this.root.clientWidth || this.root.parentElement.clientWidth - 16); }

  /** data: {layer, snapshot, channel, entry, history}; history: the filter's frame over the run, or null. */
  update({ layer, snapshot, channel, entry, history }) {
    const [, inCh, kh, kw] = layer.weight.shape;
    const ready = history?.weight && history.weight.shape[1] === inCh;
    this.root.hidden = !ready;
    if (!ready) return;
    const steps = history.snapshots.map((r) => r.step);
    const per = inCh * kh * kw;
    const w = history.weight.values(); // (snapshots, in, kh, kw)
    const u = history.update.values();
    const at = (s) => s * per + channel * kh * kw;
    const lines = [];
    for (let e = 0; e < kh * kw; e++) lines.push(steps.map((_, s) => w[at(s) + e]));
    const cosine = steps.map((_, s) => {
      let dot = 0;
      for (let i = 0; i < per; i++) dot += w[s * per + i] * w[i];
      const d = norm(w, s * per, (s + 1) * per) * norm(w, 0, per);
      return d ? dot / d : 0;
    });
    this.mark = snapshot.step;
    if (this.count !== lines.length) {
      this.chart?.destroy();
      this.chart = this.makeEntries(lines.length);
      this.count = lines.length;
    }
    this.norms ??= this.makeNorms();
    this.chartBox.title = `W of input channel ${channel}, each entry: click near a line to follow its entry`;
    this.pick(entry);
    const size = { width: this.width(), height: HEIGHT };
    for (const chart of [this.chart, this.norms]) {
      if (chart.width !== size.width) chart.setSize(size);
    }
    this.chart.setData([steps, ...lines]);
    this.norms.setData([steps, steps.map((_, s) => norm(w, s * per, (s + 1) * per)),
      steps.map((_, s) => norm(u, s * per, (s + 1) * per)), cosine]);
  }

  /** The picked entry's line bold, the others faded; every line plain when none is picked. */
  pick(entry) {
    this.chart.series.forEach((s, i) => {
      if (i === 0) return;
      s.width = entry === i - 1 ? 3 : 1.2;
      s.alpha = entry === null || entry === i - 1 ? 1 : FADED;
    });
  }

  /** The moment shown, as a vertical line. */
  momentHooks() { return { draw: [(u) => this.mark !== null && vertical(u, this.mark)] }; }

  makeEntries(count) {
    const chart = new uPlot({
      width: this.width(),
      height: HEIGHT,
      legend: { show: false }, // 25 entries: the table above is their legend
      cursor: { drag: { x: false, y: false }, points: { show: false } }, // a click picks a line, never zooms
      hooks: this.momentHooks(),
      scales: { x: { time: false } },
      axes: [
        { label: 'step', size: 30, labelSize: 14 },
        { size: AXIS, values: (u, v) => v.map(fmt) },
      ],
      series: [{ label: 'step' }, ...Array.from({ length: count }, (_, i) => ({
        label: `entry ${i}`, stroke: entryColor(i), width: 1.2, points: { show: false },
      }))],
    }, [[], ...Array.from({ length: count }, () => [])], this.chartBox);
    chart.over.addEventListener('click', (e) => this.nearest(chart, e));
    return chart;
  }

  makeNorms() {
    return new uPlot({
      width: this.width(),
      height: HEIGHT,
      cursor: { drag: { x: false, y: false } },
      hooks: this.momentHooks(),
      scales: { x: { time: false }, ...Object.fromEntries(NORMS.map((_, i) => [`own${i}`, {}])) },
      // Each line on its own scale; the one axis is ‖W‖'s, in its colour.
      axes: [{ size: 30 }, { scale: 'own0', size: AXIS, stroke: NORMS[0][1], values: (u, v) => v.map(fmt) }],
      series: [{ label: 'step' }, ...NORMS.map(([label, stroke], i) => ({
        label, stroke, scale: `own${i}`, width: 1.5, points: { show: false }, value,
      }))],
    }, [[], [], [], []], this.normsBox);
  }

  /** The entry whose line passes nearest the click, at the snapshot nearest it (again: unpicked). */
  nearest(chart, e) {
    const idx = chart.posToIdx(e.offsetX);
    if (idx === null || idx === undefined) return;
    let best = null;
    let bestDist = Infinity;
    for (let i = 1; i < chart.series.length; i++) {
      const v = chart.data[i][idx];
      if (v === null || v === undefined) continue;
      const dist = Math.abs(chart.valToPos(v, 'y') - e.offsetY);
      if (dist < bestDist) {
        bestDist = dist;
        best = i - 1;
      }
    }
    if (best !== null) this.onPick(best);
  }
}
