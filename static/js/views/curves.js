/**
 * Loss and accuracy curves (uPlot): training loss per batch, live; per epoch test loss, and train and test
 * accuracy side by side (the gap between them is overfitting). Marked on the chart: chance, ln(classes), the
 * loss of a uniform guess; every learning rate set by hand; every warning; the moment the timeline shows.
 */

import uPlot from '../../vendor/uplot/uPlot.esm.js';
import { fmt } from '../colormap.js';
import { level, momentStep, vertical } from '../chartmarks.js';
import { setText } from '../dom.js';
import { requestDraw } from '../frame.js';
import { ema } from '../smooth.js';

const EMA = 0.95; // smoothing of the training-loss line: ~20 batches of memory
/** Room for the loss axis' labels: a diverged run's losses can be 1e+12. */
const axisSize = (u, values) => 18 + 7 * Math.max(3, ...(values ?? []).map((v) => String(v).length));
const finite = (v) => (Number.isFinite(v) ? v : null);

function lowerBound(xs, v) {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class CurvesView {
  constructor(container) {
    this.box = container.querySelector('[data-role=chart]');
    this.summary = container.querySelector('[data-role=summary]');
    this.logBox = container.querySelector('[data-role=log]');
    this.logBox.addEventListener('change', () => {
      this.chart?.destroy();
      this.chart = null;
      requestDraw(this);
    });
    new ResizeObserver(() => this.resize()).observe(container);
    this.reset();
  }

  reset() {
    this.x = [];
    this.raw = [];
    this.ema = [];
    this.test = [];
    this.history = [];
    this.lrChanges = [];
    this.warnings = [];
    this.chance = null;
    this.stepsSeen = 0;
    this.cursorStep = null;
    this.chart?.destroy();
    this.chart = null;
    requestDraw(this);
  }

  /** state: the store; only what is new since the last call is appended. */
  update(state) {
    const { x, y } = state.steps;
    if (x.length < this.stepsSeen || state.steps.cuts !== this.cuts) {
      this.reset();
      this.cuts = state.steps.cuts;
    }
    for (let i = this.stepsSeen; i < x.length; i++) {
      const v = finite(y[i]);
      const prev = this.ema.length ? this.ema[this.ema.length - 1] : null;
      this.x.push(x[i]);
      this.raw.push(v);
      this.ema.push(ema(prev, v, EMA));
      this.test.push(null);
    }
    this.stepsSeen = x.length;
    this.history = state.history;
    this.lrChanges = state.run?.lr_changes ?? [];
    this.warnings = state.warnings ?? [];
    const classes = state.run?.classes?.length;
    this.chance = classes > 1 ? Math.log(classes) : null;
    requestDraw(this);
  }

  /** The timeline's moment, marked on the chart when it is not the newest. */
  moment(state) {
    const step = momentStep(state);
    if (step === this.cursorStep) return;
    this.cursorStep = step;
    this.chart?.redraw(false);
  }

  /** Width follows the box; the height is fixed (measuring it would include uPlot's own legend). */
  size() {
    return { width: Math.max(240, this.box.clientWidth), height: 200 };
  }

  /** One chart over steps: loss on the left axis, test accuracy (at each epoch's last step) on the right. */
  make() {
    const log = this.logBox.checked;
    const pct = (u, v) => (v === null || v === undefined ? '–' : `${v.toFixed(1)}%`);
    const num = (u, v) => (v === null || v === undefined ? '–' : v.toPrecision(3));
    const dpr = devicePixelRatio;
    const mark = (u) => {
      if (this.chance !== null) { // the loss of a uniform guess over the classes
        level(u, this.chance, 'loss', { color: '#64748b', textColor: '#475569', below: true, // accuracy sits above
          text: `chance: ln ${Math.round(Math.exp(this.chance))} = ${this.chance.toFixed(2)}` });
      }
      const { ctx } = u;
      ctx.save();
      ctx.font = `${11 * dpr}px system-ui, sans-serif`;
      ctx.textAlign = 'left';
      for (const { step, lr } of this.lrChanges) { // a learning rate set by hand
        const x = vertical(u, step, { color: '#d97706', width: 1.5, dash: [3, 3] });
        ctx.fillStyle = '#b45309';
        ctx.fillText(`lr ${fmt(lr)}`, x + 3 * dpr, u.bbox.top + 12 * dpr);
      }
      for (const w of this.warnings) { // a triangle at the top of the chart where each warning was raised
        const x = Math.round(u.valToPos(w.step, 'x', true));
        ctx.fillStyle = '#dc2626';
        ctx.beginPath();
        ctx.moveTo(x - 6 * dpr, u.bbox.top);
        ctx.lineTo(x + 6 * dpr, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + 10 * dpr);
        ctx.fill();
      }
      ctx.restore();
      if (this.cursorStep !== null) vertical(u, this.cursorStep); // the moment the timeline shows
    };
    return new uPlot({
      ...this.size(),
      hooks: { draw: [mark] },
      cursor: { drag: { x: true, y: false } },
      scales: {
        x: { time: false },
        loss: log ? { distr: 3 } : { range: (u, min, max) => [0, max > 0 ? max * 1.05 : 1] },
        acc: { range: [0, 100] },
      },
      axes: [
        { label: 'step', size: 34, labelSize: 14 },
        { scale: 'loss', label: 'loss', labelSize: 14, values: (u, v) => v.map(fmt), size: axisSize },
        // 54 px: room for '97.5%' and '100%' beside the ticks (at 44 the last character was cut off)
        { scale: 'acc', side: 1, size: 54, grid: { show: false }, values: (u, v) => v.map((t) => `${+t.toFixed(1)}%`) },
      ],
      series: [
        { label: 'step' },
        { label: 'batch loss', scale: 'loss', stroke: 'rgba(37, 99, 235, 0.3)', width: 1, points: { show: false }, value: num },
        { label: 'smoothed', scale: 'loss', stroke: '#1d4ed8', width: 2, points: { show: false }, value: num },
        { label: 'test loss', scale: 'loss', stroke: '#ea580c', width: 1.5, spanGaps: true, dash: [4, 3],
          points: { show: true, size: 7, fill: '#ea580c' }, value: num },
        { label: 'train accuracy', scale: 'acc', stroke: '#7c3aed', width: 1.5, spanGaps: true, dash: [2, 2],
          points: { show: true, size: 6, fill: '#7c3aed' }, value: pct },
        { label: 'test accuracy', scale: 'acc', stroke: '#059669', width: 1.5, spanGaps: true,
          points: { show: true, size: 7, fill: '#059669' }, value: pct },
      ],
    }, [[], [], [], [], [], []], this.box);
  }

  draw() {
    this.chart ??= this.make();
    const test = this.test.fill(null);
    const acc = new Array(this.x.length).fill(null);
    const train = new Array(this.x.length).fill(null);
    const pct = (v) => (Number.isFinite(v) ? 100 * v : null);
    for (const h of this.history) {
      if (!this.x.length) continue;
      const i = Math.min(this.x.length - 1, lowerBound(this.x, h.step));
      test[i] = finite(h.test_loss);
      acc[i] = pct(h.test_accuracy);
      train[i] = pct(h.train_accuracy);
    }
    const log = this.logBox.checked;
    const pos = (arr) => (log ? arr.map((v) => (v !== null && v > 0 ? v : null)) : arr);
    this.chart.setData([this.x, pos(this.raw), pos(this.ema), pos(test), train, acc]);
    const last = this.history[this.history.length - 1];
    let text = '';
    if (last && Number.isFinite(last.test_accuracy)) {
      text = `after epoch ${last.epoch}: test accuracy ${(100 * last.test_accuracy).toFixed(1)}%, test loss ${last.test_loss?.toPrecision(3) ?? '–'}`;
      if (Number.isFinite(last.train_accuracy)) {
        const gap = 100 * (last.train_accuracy - last.test_accuracy);
        const points = `${Math.abs(gap).toFixed(1)} point${Math.abs(gap).toFixed(1) === '1.0' ? '' : 's'}`;
        // Above test: the overfitting gap; below it (dropout, augmentation, a noisy small test set): no gap at all.
        const versus = gap >= 0.05 ? `${points} above test accuracy` : gap <= -0.05
          ? `${points} below test accuracy: no sign of overfitting` : 'the same as test accuracy';
        text += ` · train accuracy ${(100 * last.train_accuracy).toFixed(1)}%, ${versus}`;
      }
      // Overfitting's signature: the test loss climbs back from its best while the training images are learnt.
      const best = this.history.reduce((b, h) => (Number.isFinite(h.test_loss) && (!b || h.test_loss < b.test_loss) ? h : b), null);
      if (best && best.epoch < last.epoch && last.test_loss > 1.15 * best.test_loss) {
        text += ` · test loss up from its best ${best.test_loss.toPrecision(3)} (epoch ${best.epoch}): overfitting,`
          + ' the network memorises its training images';
      }
    }
    setText(this.summary, text);
  }

  resize() { this.chart?.setSize(this.size()); }
}
