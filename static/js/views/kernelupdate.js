/**
 * In the kernel inspector, "the update, worked": the optimizer's rule for one kernel entry, first in words, then
 * with the run's own numbers for the step that made this snapshot: this batch's dW, the optimizer's state
 * before and after (Adam's m and v, momentum's velocity), ΔW by the rule, and beside it the ΔW the snapshot
 * holds. The numbers come from the server, which replays the run to the batch before (GET …/update/…); the
 * words from the boot data's optimizer settings, which the training loop reads too (loop.OPTIMIZERS). Entries,
 * channels and filters are counted from 0, as PyTorch's W[f, c, i, j].
 */

import { num } from './kernelgrid.js';
import { workedPath, WorkedSource } from './workedsource.js';

/** About how many past values a running average with decay `beta` remembers: 1 / (1 − beta). */
const memory = (beta) => Math.round(1 / (1 - beta));
/** 4 significant digits (exponent form when tiny or huge): a step of 3e-5 on a W of 0.01 stays visible. */
export const sig = (x) => (Number.isFinite(x) ? (x === 0 ? '0' : Math.abs(x) < 1e-3 || Math.abs(x) >= 1e4
  ? x.toExponential(3) : x.toPrecision(4)) : '–');
const minus = (s) => s.replace(/^-/, '−');
const show = (x) => minus(sig(x));
/** W before and after, with decimals down to the step's third significant digit. */
const fixed = (x, step) => {
  const digits = Math.min(12, Math.max(4, Math.ceil(-Math.log10(Math.abs(step) || 1)) + 2));
  return minus(x.toFixed(digits));
};

export class KernelUpdateView {
  /** optimizers: the boot data's {name: settings}; onArrive(): worked numbers came, redraw. */
  constructor(container, { optimizers = {}, onArrive = () => {} } = {}) {
    this.root = container;
    this.optimizers = optimizers;
    this.source = new WorkedSource(onArrive);
    this.rule = document.createElement('p');
    this.rule.className = 'worked-rule';
    this.lines = document.createElement('div');
    this.lines.className = 'worked-lines';
    this.lines.dataset.testid = 'update-worked';
    container.append(this.rule, this.lines);
    this.reset();
  }

  reset() {
    this.rule.textContent = '';
    this.lines.replaceChildren();
    this.shownKey = null;
    this.source.reset();
  }

  /** data: {layer, snapshot, filter, channel, entry, run, runId, index, following} — index: the run's snapshot
   * refs; following: the moment shown is a live run's head, moving on. */
  update(data) {
    this.rule.textContent = this.text(data);
    const { layer, snapshot: snap, filter, runId, index } = data;
    const at = index.findIndex((r) => r.seq === snap.seq);
    const asked = runId && snap.step > 0 && at >= 0
      ? workedPath('update', runId, snap.seq, layer.name, filter) : null;
    // Working a step out replays the run from its last checkpoint: not for every moment of a run training live.
    const answer = asked && !data.following ? this.source.get(asked) : null;
    const key = `${asked}:${data.channel}:${this.entryOf(data)}:${answer ? 'a' : '-'}:${snap.seq}:${data.following}`;
    if (key === this.shownKey) return;
    this.shownKey = key;
    if (!asked) this.lines.replaceChildren();
    else if (data.following) {
      this.lines.replaceChildren(line('Pause the run or pick a moment on the timeline to see this step worked with '
        + 'the optimizer\'s own numbers (working it out trains the run again from its last checkpoint, which is '
        + 'not done for every moment of a run training live).', 'hint'));
    }
    else if (!answer) this.lines.replaceChildren(line(`Working out the step that made step ${snap.step}…`, 'hint'));
    else if (answer.error) this.lines.replaceChildren(line(answer.error, 'hint'));
    else this.lines.replaceChildren(...this.worked(data, answer.body));
  }

  entryOf({ layer, entry }) {
    const [, , kh, kw] = layer.weight.shape;
    return entry ?? Math.floor((kh * kw) / 2);
  }

  /** The rule in words (before the numbers arrive, and above them). */
  text({ layer, snapshot: snap, run, index }) {
    const at = index.findIndex((r) => r.seq === snap.seq);
    const prev = at > 0 ? index[at - 1] : null;
    const batches = prev ? snap.step - prev.step : 0;
    if (!prev || batches === 0) return 'ΔW is zero here: nothing trained between this snapshot and the one before.';
    const span = batches > 1 ? ` ΔW spans the ${batches} batches since the previous snapshot (step ${prev.step}); `
      + 'below, the last of them.' : ' ΔW spans one batch: below, that step.';
    const cfg = run?.config ?? {};
    const settings = this.optimizers[cfg.optimizer] ?? {};
    const momentum = settings.momentum ?? 0;
    if (cfg.optimizer === 'adam') {
      const [b1, b2] = settings.betas ?? [];
      return `Adam (β₁ ${b1}, β₂ ${b2}, ε ${settings.eps}) gives every entry its own step: lr × m̂ / (√v̂ + ε), `
        + `where m and v are running averages of dW (over about ${memory(b1)} batches) and dW² (about `
        + `${memory(b2)}), so each entry moves by up to about lr per batch whatever the size of its gradient, `
        + `against the gradient's recent direction. ΔW is therefore not proportional to dW.${span}`;
    }
    if ((cfg.optimizer === 'sgd' || cfg.optimizer === 'momentum') && momentum > 0) {
      return `SGD with momentum ${momentum}: each batch moves W by −lr × v, where v = ${momentum} × v + dW sums `
        + `past gradients (about the last ${memory(momentum)}), so W keeps moving the way it has been going, not `
        + `only against this batch's dW.${span}`;
    }
    if (cfg.optimizer === 'sgd') {
      const wd = cfg.weight_decay ? ' + weight decay × W' : '';
      return `Plain SGD: each batch moves W against its own gradient, W_next = W − lr × (dW${wd}).${span}`;
    }
    return `${cfg.optimizer ?? 'The optimizer'} moves W by its own rule, from dW and what it keeps of past batches.`
      + span;
  }

  /** The step for the entry, line by line, from the server's answer `a`, and the snapshot's own ΔW beside it. */
  worked(data, a) {
    const { layer, filter, channel } = data;
    const [, inCh, kh, kw] = layer.weight.shape;
    const e = this.entryOf(data);
    const i = Math.floor(e / kw);
    const j = e % kw;
    const pick = (arr) => arr[channel][i][j];
    const w = pick(a.before);
    const dW = pick(a.grad);
    const wd = a.weight_decay;
    const g = dW + wd * w;
    const lr = a.lr;
    const lines = [line(`For entry (${i}, ${j}) of input channel ${channel}: W[${filter}, ${channel}, ${i}, ${j}] `
      + 'in PyTorch, filters, channels, rows and columns all counted from 0. '
      + `The batch that made step ${a.step}${a.t ? ` (Adam's t = ${a.t})` : ''}, at lr ${num(lr)}:`)];
    const holds = (name, arr, mine) => {
      if (!arr) return '';
      const theirs = pick(arr);
      return Math.abs(theirs - mine) <= 1e-5 * Math.abs(theirs) + 1e-30 ? ` (the optimizer's own ${name} now: `
        + `${show(theirs)})` : ` (✗ the optimizer holds ${name} = ${show(theirs)})`;
    };
    const gLine = wd ? `g = dW + weight decay × W = ${show(dW)} + ${num(wd)} × ${show(w)} = ${show(g)}`
      : `g = dW = ${show(dW)}`;
    let computed;
    if (a.optimizer === 'adam') {
      const [b1, b2] = a.settings.betas;
      const { eps } = a.settings;
      const t = a.t;
      const m0 = a.state_before.m ? pick(a.state_before.m) : 0;
      const v0 = a.state_before.v ? pick(a.state_before.v) : 0;
      const m = b1 * m0 + (1 - b1) * g;
      const v = b2 * v0 + (1 - b2) * g * g;
      const mHat = m / (1 - b1 ** t);
      const vHat = v / (1 - b2 ** t);
      computed = (-lr * mHat) / (Math.sqrt(vHat) + eps);
      const first = a.state_before.m ? '' : ' (m and v start at 0: this is the first step)';
      lines.push(
        line(gLine),
        line(`m = β₁ × m + (1 − β₁) × g = ${b1} × ${show(m0)} + ${fmtNum(1 - b1)} × ${show(g)} = ${show(m)}`
          + `${holds('m', a.state_after.m, m)}${first}`),
        line(`v = β₂ × v + (1 − β₂) × g² = ${b2} × ${show(v0)} + ${fmtNum(1 - b2)} × ${show(g * g)} = ${show(v)}`
          + holds('v', a.state_after.v, v)),
        line(`m̂ = m / (1 − β₁^t) = ${show(m)} / (1 − ${b1}^${t}) = ${show(mHat)}; `
          + `v̂ = v / (1 − β₂^t) = ${show(v)} / (1 − ${b2}^${t}) = ${show(vHat)}`),
        line(`ΔW = −lr · m̂ / (√v̂ + ε) = −${num(lr)} × ${show(mHat)} / (${show(Math.sqrt(vHat))} + ${eps}) = `,
          'result', computed),
      );
    } else if (a.settings.momentum) {
      const mu = a.settings.momentum;
      const v0 = a.state_before.velocity ? pick(a.state_before.velocity) : null;
      const v = v0 === null ? g : mu * v0 + g;
      computed = -lr * v;
      lines.push(
        line(gLine),
        line(v0 === null ? `v = g = ${show(v)} (PyTorch starts the velocity at the first step's gradient)`
          : `v = ${mu} × v + g = ${mu} × ${show(v0)} + ${show(g)} = ${show(v)}${holds('velocity',
            a.state_after.velocity, v)}`),
        line(`ΔW = −lr × v = −${num(lr)} × ${show(v)} = `, 'result', computed),
      );
    } else {
      computed = -lr * g;
      lines.push(line(wd ? `ΔW = −lr × (dW + weight decay × W) = −${num(lr)} × (${show(dW)} + ${num(wd)} × `
        + `${show(w)}) = ` : `ΔW = −lr × dW = −${num(lr)} × ${show(dW)} = `, 'result', computed));
    }
    const flat = filter * inCh * kh * kw + channel * kh * kw + e;
    const held = layer.update.values()[flat];
    const step = layer.update.scale / 32767; // the frame keeps ΔW to this (int16 on the layer's largest |ΔW|)
    const after = pick(a.after);
    if (a.batches === 1) {
      const agree = Math.abs(computed - held) <= step + 1e-7 * Math.abs(held);
      const diff = Math.abs(computed - held);
      lines.push(line('The snapshot holds ΔW = ', 'held', held, agree
        ? ` ✓ the same step: they differ by ${diff ? sig(diff) : '0'}, within the ±${sig(step / 2)} the snapshot `
          + 'keeps ΔW to.'
        : ` ✗ not the step worked out above (they differ by ${sig(computed - held)}).`));
    } else {
      lines.push(line(`The snapshot's ΔW = `, 'held', held, ` sums all ${a.batches} batches since step `
        + `${a.previous?.step ?? 0}; the one worked above is the last of them.`));
    }
    lines.push(line(`W: ${fixed(w, computed)} → ${fixed(after, computed)} (replayed: the snapshot's W).`));
    return lines;
  }
}

const fmtNum = (x) => String(Number(x.toPrecision(6)));

/** One line of the worked update; with a value, it ends in that number (data-value holds it in full). */
function line(text, role = null, value = null, tail = '') {
  const el = document.createElement('div');
  el.className = role === 'hint' ? 'hint' : 'worked-line';
  el.append(text);
  if (value !== null) {
    const b = document.createElement('b');
    b.dataset.testid = role === 'held' ? 'update-held' : 'update-computed';
    b.dataset.value = String(value);
    b.textContent = show(value);
    el.append(b, tail);
  }
  return el;
}
