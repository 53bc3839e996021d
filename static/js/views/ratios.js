/**
 * How big each step is: per conv layer, ||ΔW|| / ||W|| of every batch (uPlot, log scale), smoothed over about
 * ten batches. The rule of thumb says about 1e-3 learns steadily: far below, the learning rate is too small
 * (the weights barely move); far above, every step rewrites much of the weights (too large: it overshoots).
 */

import uPlot from '../../vendor/uplot/uPlot.esm.js';
import { level, momentStep, vertical } from '../chartmarks.js';
import { requestDraw } from '../frame.js';
import { ema } from '../smooth.js';

const COLORS = ['#2563eb', '#ea580c', '#059669', '#7c3aed', '#db2777', '#0891b2'];
const SMOOTH = 0.9; // geometric moving average: ~10 batches of memory
export const HEALTHY = { lo: 1e-4, mid: 1e-3, hi: 1e-2 };

export class RatiosView {
  constructor(container) {
    this.box = container.querySelector('[data-role=ratio-chart]');
    new ResizeObserver(() => this.chart?.setSize(this.size())).observe(this.box);
    this.reset();
  }

  reset() {
    this.x = [];
    this.names = [];
    this.series = {};
    this.seen = 0;
    this.cursorStep = null;
    this.chart?.destroy();
    this.chart = null;
    requestDraw(this);
  }

  update(state) {
    const { x, ratios } = state.steps;
    const names = Object.keys(ratios ?? {});
    if (x.length < this.seen || state.steps.cuts !== this.cuts || names.join() !== this.names.join()) {
      this.reset();
      this.cuts = state.steps.cuts;
      this.names = names;
      for (const name of names) this.series[name] = [];
    }
    for (let i = this.seen; i < x.length; i++) {
      this.x.push(x[i]);
      for (const name of names) {
        const out = this.series[name];
        out.push(ema(out.length ? out[out.length - 1] : null, ratios[name][i], SMOOTH, true));
      }
    }
    this.seen = x.length;
    requestDraw(this);
  }

  moment(state) {
    const step = momentStep(state);
    if (step === this.cursorStep) return;
    this.cursorStep = step;
    this.chart?.redraw(false);
  }

  size() { return { width: Math.max(240, this.box.clientWidth), height: 150 }; }

  make() {
    const band = (u) => {
      const { ctx } = u;
      const y = (v) => Math.round(u.valToPos(v, 'y', true));
      const top = Math.max(u.bbox.top, y(HEALTHY.hi));
      const bottom = Math.min(u.bbox.top + u.bbox.height, y(HEALTHY.lo));
      ctx.save();
      if (bottom > top) {
        ctx.fillStyle = 'rgba(16, 185, 129, 0.10)';
        ctx.fillRect(u.bbox.left, top, u.bbox.width, bottom - top);
      }
      ctx.restore();
      level(u, HEALTHY.mid, 'y', { color: '#10b981', textColor: '#047857', text: '≈ 1e-3: the usual healthy step' });
      if (this.cursorStep !== null) vertical(u, this.cursorStep);
    };
    const exp = (u, v) => (v === null || v === undefined ? '–' : v.toExponential(1));
    return new uPlot({
      ...this.size(),
      hooks: { drawClear: [band] },
      scales: { x: { time: false }, y: { distr: 3, range: (u, min, max) => [Math.min(min ?? 1e-5, 1e-5), Math.max(max ?? 1e-1, 1e-1)] } },
      axes: [
        { label: 'step', size: 30, labelSize: 14 },
        { label: '‖ΔW‖ / ‖W‖', labelSize: 14, size: 58, values: (u, v) => v.map((t) => (t === null ? '' : t.toExponential(0))) },
      ],
      series: [{ label: 'step' }, ...this.names.map((name, i) => ({
        label: name, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: false }, value: exp,
      }))],
    }, [[], ...this.names.map(() => [])], this.box);
  }

  draw() {
    if (!this.names.length) return;
    this.chart ??= this.make();
    this.chart.setData([this.x, ...this.names.map((n) => this.series[n])]);
  }
}
