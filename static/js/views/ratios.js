/**
 * How big each step is: per conv layer, ||ΔW|| / ||W|| of every batch (uPlot, log scale), smoothed over about
 * ten batches. The rule of thumb says about 1e-3 learns steadily: far below, the learning rate is too small
 * (the weights barely move); far above, every step rewrites much of the weights (too large: it overshoots).
 *
 * A step size inside the band is not health by itself: a layer no gradient reaches (its ReLUs never fire) is still
 * moved by weight decay, lr × wd a step (3e-4 for SGD at 1.0 with the default decay: inside the band). So each
 * layer is also named with its state under the chart, from the moment shown: dead where none of its filters gets a
 * gradient (or it is not a number), where most get none once the run has been told its ReLUs died (diagnose.py:
 * a silent majority alone is no death early on), or where it does not move at all.
 */

import uPlot from '../../vendor/uplot/uPlot.esm.js';
import { level, momentStep, vertical } from '../chartmarks.js';
import { requestDraw } from '../frame.js';
import { ema } from '../smooth.js';

const COLORS = ['#2563eb', '#ea580c', '#059669', '#7c3aed', '#db2777', '#0891b2'];
const SMOOTH = 0.9; // geometric moving average: ~10 batches of memory
export const HEALTHY = { lo: 1e-4, mid: 1e-3, hi: 1e-2 };
const Y_RANGE = [1e-5, 1e-1]; // at least these decades, one labelled tick each

/** The y axis's ticks: every power of ten from `min` to `max` (uPlot's splits hook). */
function decades(u, axis, min, max) {
  const out = [];
  for (let e = Math.ceil(Math.log10(min) - 1e-9); e <= Math.floor(Math.log10(max) + 1e-9); e++) out.push(10 ** e);
  return out;
}

/** Per layer of the moment shown, {name, state, text}: 'dead', 'silent', 'small', 'annealed', 'healthy' or 'large'.
 * `ratio`: its step size at that step (null: none yet); `silent`: of its `filters`, how many get no gradient in the
 * snapshot (null at step 0: no step); `died`: the run was told its ReLUs died at or before this step; `annealed`:
 * the learning rate then as a fraction of the run's own, when its schedule has brought it below a tenth (small
 * steps are then what the schedule meant, not a run that cannot learn), else null. */
export function layerState(name, ratio, silent, filters, died, step, frozen = false, annealed = null) {
  const at = `at step ${step}`;
  if (frozen) return { name, state: 'frozen', text: `${name} frozen: the optimizer does not move it` };
  const decay = ratio > 0 && Number.isFinite(ratio) ? `; what moves it (${ratio.toExponential(1)} a step) is weight`
    + ' decay, not learning' : '';
  if (silent !== null && filters && (silent === filters || (died && silent > filters / 2))) {
    const some = silent === filters ? 'none of its filters gets' : `${silent} of its ${filters} filters get`;
    return { name, state: 'dead', text: `${name} dead ${at}: ${some} a gradient${silent === filters ? decay : ''}` };
  }
  if (ratio === null) return { name, state: 'unknown', text: `${name}: no step yet` };
  if (!(ratio > 0) || !Number.isFinite(ratio)) return { name, state: 'dead', text: `${name} dead ${at}: its weights do not move` };
  const size = ratio.toExponential(1);
  const quiet = silent > filters / 2 ? ` (${silent} of ${filters} filters get no gradient)` : '';
  if (ratio < HEALTHY.lo && annealed !== null) {
    const left = `${Number((100 * annealed).toPrecision(2))} %`;
    return { name, state: 'annealed', text: `${name} ${size}: small steps, as the schedule means them (the learning `
      + `rate is down to ${left} of the run's)${quiet}` };
  }
  if (ratio < HEALTHY.lo) return { name, state: 'small', text: `${name} ${size}: steps too small to learn${quiet}` };
  if (ratio > HEALTHY.hi) return { name, state: 'large', text: `${name} ${size}: steps too large, they overshoot${quiet}` };
  if (quiet) return { name, state: 'silent', text: `${name} ${size}: a healthy step size, but${quiet}` };
  return { name, state: 'healthy', text: `${name} ${size}: a healthy step` };
}

/** Of a dL/dW (filters, in, kh, kw), how many filters get no gradient at all (every entry 0, or not a number). */
export function silentFilters(grad) {
  const values = grad.values();
  const [filters] = grad.shape;
  const n = values.length / filters;
  let silent = 0;
  for (let f = 0; f < filters; f++) {
    let any = false;
    for (let i = f * n; i < (f + 1) * n && !any; i++) any = values[i] !== 0 && Number.isFinite(values[i]);
    if (!any) silent += 1;
  }
  return silent;
}

export class RatiosView {
  constructor(container) {
    this.box = container.querySelector('[data-role=ratio-chart]');
    this.stateLine = document.createElement('p'); // each layer's state at the moment shown: dead is not healthy
    this.stateLine.className = 'info ratio-state';
    this.stateLine.dataset.testid = 'ratio-state';
    this.box.after(this.stateLine);
    this.states = [];
    new ResizeObserver(() => this.chart?.setSize(this.size())).observe(this.box);
    this.reset();
  }

  reset() {
    this.x = [];
    this.names = [];
    this.series = {};
    this.seen = 0;
    this.cursorStep = null;
    this.states = [];
    this.stateKey = '';
    this.stateLine.replaceChildren();
    this.chart?.destroy();
    this.chart = null;
    requestDraw(this);
  }

  update(state) {
    this.frozen = new Set(state.run?.config?.freeze ?? []); // their steps are zero: named so in the legend
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
        const raw = ratios[name][i];
        // A step of 0 or NaN has no place on a log scale: a gap in the line (the layer's state says dead).
        out.push(raw > 0 && Number.isFinite(raw) ? ema(out.length ? out[out.length - 1] : null, raw, SMOOTH, true) : null);
      }
    }
    this.seen = x.length;
    this.showStates(state);
    requestDraw(this);
  }

  moment(state) {
    this.showStates(state);
    const step = momentStep(state);
    if (step === this.cursorStep) return;
    this.cursorStep = step;
    this.chart?.redraw(false);
  }

  /** Each layer's state at the moment shown (the snapshot's dL/dW, the smoothed step size at its step). */
  showStates(state) {
    const snap = state.snapshot;
    if (!snap || !this.names.length) return;
    const at = this.x.findLastIndex((s) => s <= snap.step);
    const base = state.run?.lr;
    const scheduled = state.run?.config?.lr_schedule && state.run.config.lr_schedule !== 'constant';
    const annealed = scheduled && snap.lr > 0 && base > 0 && snap.lr < 0.1 * base ? snap.lr / base : null;
    this.states = this.names.map((name) => {
      const layer = snap.layers?.find((l) => l.name === name);
      const silent = snap.step > 0 && layer?.grad ? silentFilters(layer.grad) : null;
      const died = state.warnings.some((w) => w.kind === 'dead' && w.step <= snap.step);
      const ratio = at >= 0 ? this.series[name][at] ?? state.steps.ratios[name]?.[at] ?? null : null; // raw 0 or NaN
      const frozen = Boolean(state.run?.config?.freeze?.includes(name));
      return layerState(name, ratio, silent, layer?.grad?.shape[0] ?? 0, died, snap.step, frozen, annealed);
    });
    const key = this.states.map((s) => s.text).join('|');
    if (key === this.stateKey) return;
    this.stateKey = key;
    this.stateLine.replaceChildren(...this.states.map((s, i) => {
      const span = document.createElement('span');
      span.className = `layer-state ${s.state}`;
      span.dataset.state = s.state;
      span.textContent = (i ? ' · ' : '') + s.text;
      return span;
    }));
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
      scales: { x: { time: false }, y: { distr: 3, range: (u, min, max) => [
        10 ** Math.floor(Math.log10(Math.min(min ?? Y_RANGE[0], Y_RANGE[0]))),
        10 ** Math.ceil(Math.log10(Math.max(max ?? Y_RANGE[1], Y_RANGE[1])))] } },
      axes: [
        { label: 'step', size: 30, labelSize: 14 },
        { // every power of ten labelled: uPlot's default spacing left a single label on 150 px
          label: '‖ΔW‖ / ‖W‖', labelSize: 14, size: 58, space: 12, splits: decades,
          values: (u, v) => v.map((t) => (t === null ? '' : t.toExponential(0))),
        },
      ],
      series: [{ label: 'step' }, ...this.names.map((name, i) => ({
        label: this.frozen?.has(name) ? `${name} (frozen)` : name, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: false }, value: exp,
      }))],
    }, [[], ...this.names.map(() => [])], this.box);
  }

  draw() {
    if (!this.names.length) return;
    this.chart ??= this.make();
    this.chart.setData([this.x, ...this.names.map((n) => this.series[n])]);
  }
}
