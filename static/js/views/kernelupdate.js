/**
 * In the kernel inspector, "the update, worked": the optimizer's rule written out with this run's numbers for
 * one entry of the kernel. Plain SGD from one batch to the next is checked against the snapshot; with momentum
 * or Adam, ΔW is not a multiple of this batch's dW, and the sentence says why. The optimizer's settings
 * (momentum, Adam's betas and eps) come from the boot data, which the training loop reads too (loop.OPTIMIZERS).
 */

import { num } from './kernelgrid.js';

/** About how many past values a running average with decay `beta` remembers: 1 / (1 − beta). */
const memory = (beta) => Math.round(1 / (1 - beta));

export class KernelUpdateView {
  /** optimizers: the boot data's {name: settings}, e.g. {momentum: {momentum: 0.9}, adam: {betas, eps}}. */
  constructor(container, { optimizers = {} } = {}) {
    this.root = container;
    this.optimizers = optimizers;
    this.reset();
  }

  reset() { this.root.textContent = ''; }

  /** data: {layer, snapshot, filter, channel, entry, run, index} — index: the run's snapshot refs. */
  update(data) { this.root.textContent = this.text(data); }

  text({ layer, snapshot: snap, filter, channel, entry, run, index }) {
    const at = index.findIndex((r) => r.seq === snap.seq);
    const prev = at > 0 ? index[at - 1] : null;
    const batches = prev ? snap.step - prev.step : 0;
    if (!prev || batches === 0) return 'ΔW is zero here: nothing trained between this snapshot and the one before.';
    const span = batches > 1 ? ` ΔW spans the ${batches} batches since the previous snapshot (step ${prev.step}).`
      : '';
    const [, inCh, kh, kw] = layer.weight.shape;
    const e = entry ?? Math.floor((kh * kw) / 2);
    const i = filter * inCh * kh * kw + channel * kh * kw + e;
    const w = layer.weight.values()[i];
    const g = layer.grad.values()[i];
    const d = layer.update.values()[i];
    const lr = snap.lr;
    const cfg = run?.config ?? {};
    const wd = cfg.weight_decay ?? 0;
    const where = `entry (${Math.floor(e / kw)}, ${e % kw})`;
    const numbers = `For ${where}: ΔW ${num(d)}, dW ${num(g)}, lr ${num(lr)}.`;
    const settings = this.optimizers[cfg.optimizer] ?? {};
    const momentum = settings.momentum ?? 0;
    if (cfg.optimizer === 'adam') {
      const [b1, b2] = settings.betas ?? [];
      return `Adam (β₁ ${b1}, β₂ ${b2}, ε ${settings.eps}) gives every entry its own step: about lr × m / (√v + ε), `
        + `where m and v are running averages of dW (over about ${memory(b1)} batches) and dW² (about `
        + `${memory(b2)}), so each entry moves by up to about lr per batch whatever the size of its gradient, `
        + `against the gradient's recent direction. ΔW is therefore not proportional to dW.${span} ${numbers}`;
    }
    if ((cfg.optimizer === 'sgd' || cfg.optimizer === 'momentum') && momentum > 0) {
      return `SGD with momentum ${momentum}: each batch moves W by −lr × v, where v = ${momentum} × v + dW sums `
        + `past gradients (about the last ${memory(momentum)}), so W keeps moving the way it has been going, not `
        + `only against this batch's dW.${span} ${numbers}`;
    }
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
    return `${cfg.optimizer ?? 'The optimizer'} moves W by its own rule, from dW and what it keeps of past `
      + `batches.${span} ${numbers}`;
  }
}
