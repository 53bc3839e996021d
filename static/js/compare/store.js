/** The compare page's one state object: the runs, their curves, their snapshots, and the moment shown. */

import { isLive } from '../statuses.js';
import { atOrBefore, Emitter } from '../store.js';

export const COLORS = ['#2563eb', '#ea580c', '#059669', '#7c3aed', '#db2777', '#0891b2', '#65a30d', '#b91c1c'];

/**
 * Events: 'runs' (runs and their histories changed), 'steps' (curves), 'moment' (the moment or how filters are
 * drawn changed), 'frames' (a frame arrived), 'notice'.
 */
export class CompareStore extends Emitter {
  constructor(boot) {
    super();
    this.boot = boot;
    this.runs = []; // as GET /api/runs/{id} answers, in the order asked for
    this.steps = {}; // run id -> {steps, losses, ratios}
    this.index = {}; // run id -> [{seq, step, epoch, epoch_end}]
    this.frames = new Map(); // `${id}:${seq}` -> decoded frame
    this.view = { align: 'step', at: 0, layer: null, match: true, sharedScale: false, ratioLayer: null, target: 0.9 };
  }

  color(i) { return COLORS[i % COLORS.length]; }

  get live() { return this.runs.some((r) => isLive(r.status)); }

  setRuns(runs) {
    this.runs = runs;
    const layers = runs[0]?.layers?.map((l) => l.name) ?? [];
    if (!layers.includes(this.view.layer)) this.view.layer = layers[0] ?? null;
    if (!layers.includes(this.view.ratioLayer)) this.view.ratioLayer = layers[0] ?? null;
    this.emit('runs', this);
  }

  setSteps(id, steps) {
    this.steps[id] = steps;
    this.emit('steps', this);
  }

  setIndex(id, list) {
    this.index[id] = list;
    this.emit('moment', this);
  }

  /** The largest value the shared timeline takes: steps (or epochs) of the longest run. */
  get extent() {
    if (this.view.align === 'epoch') return Math.max(0, ...this.runs.map((r) => r.config.epochs));
    return Math.max(0, ...this.runs.map((r) => r.total_steps));
  }

  /** Each run's snapshot at the moment shown: at or before the step, or at the end of the epoch (0: step 0). */
  refAt(id) {
    const list = this.index[id] ?? [];
    const { align, at } = this.view;
    if (align === 'epoch') {
      if (at === 0) return list[0] ?? null;
      return list.find((r) => r.epoch_end && r.epoch === at) ?? list.findLast((r) => r.epoch < at) ?? null;
    }
    return atOrBefore(list, at);
  }

  frame(id, seq) { return this.frames.get(`${id}:${seq}`) ?? null; }

  putFrame(id, frame) {
    this.frames.set(`${id}:${frame.seq}`, frame);
    this.emit('frames', this);
  }

  setView(fields) {
    Object.assign(this.view, fields);
    this.emit('moment', this);
  }

  notice(message) { this.emit('notice', { message, kind: 'error' }); }
}
