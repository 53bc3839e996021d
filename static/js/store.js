/** The page's one state object and its emitter: the only channel between views. */

import { tokens } from './api.js';

/** A tiny event emitter: on(type, fn) returns the function that unsubscribes. */
export class Emitter {
  constructor() { this.handlers = new Map(); }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.handlers.get(type).delete(fn);
  }

  emit(type, data) {
    for (const fn of this.handlers.get(type) ?? []) fn(data);
  }
}

export const FINAL = new Set(['stopped', 'finished', 'diverged', 'failed']);
export const LIVE = new Set(['queued', 'running', 'paused']);
// Nothing trains it until its owner resumes it (the server stopped while it trained); its socket stays quiet.
export const INTERRUPTED = 'interrupted';

/**
 * Events: 'reset' (views start from scratch), 'run' (run fields changed: status, step, lr...),
 * 'steps', 'epoch', 'snapshot', 'view' (W/dW/ΔW, scaling, selection), 'connection', 'notice'.
 */
export class Store extends Emitter {
  constructor(boot) {
    super();
    this.boot = boot; // {datasets, models, defaults, version}
    // scale: 'run' (per layer, over the whole run so far), 'moment' (per layer, this snapshot), 'filter'.
    // show: 'now' (the filters at this moment), 'start' (at step 0), 'both' (side by side).
    this.view = { mode: 'weight', scale: 'run', show: 'now', selected: null };
    this.connection = 'idle';
    this.clear();
  }

  /** Forget the current run (no run attached). */
  clear() {
    this.blank();
    this.emit('reset');
    this.emit('run', this);
  }

  blank() {
    this.runId = null;
    this.run = null;
    this.history = [];
    this.steps = { x: [], y: [] };
    this.snapshot = null;
    this.previous = null;
    this.first = null; // the untrained network (seq 0): what every filter is compared with
    this.view.selected = null;
  }

  dataset(name) { return this.boot.datasets.find((d) => d.name === name) ?? null; }

  /** The socket's hello: the full run with its history; everything before it is dropped. */
  hello(run) {
    this.blank();
    this.runId = run.id;
    this.run = { ...run, receivedAt: performance.now() };
    this.history = [...(run.history ?? [])];
    this.emit('reset');
    this.emit('run', this);
    this.emit('epoch', this);
  }

  /** Merge fields of the run (from an HTTP answer or a status message). */
  patchRun(fields) {
    if (!this.run) return;
    const { type, ...rest } = fields;
    Object.assign(this.run, rest);
    if ('elapsed' in rest) this.run.receivedAt = performance.now();
    this.emit('run', this);
  }

  addSteps(steps, losses) {
    for (let i = 0; i < steps.length; i++) {
      this.steps.x.push(steps[i]);
      this.steps.y.push(losses[i]);
    }
    if (this.run && steps.length) {
      this.run.step = Math.max(this.run.step ?? 0, steps[steps.length - 1]);
      this.emit('run', this);
    }
    this.emit('steps', this);
  }

  addEpoch(entry) {
    const { type, ...row } = entry;
    this.history = this.history.filter((h) => h.epoch !== row.epoch).concat([row]);
    if (this.run) {
      this.run.epoch = Math.max(this.run.epoch ?? 0, row.epoch);
    }
    this.emit('epoch', this);
    this.emit('run', this);
  }

  setSnapshot(snapshot) {
    if (snapshot.seq === 0) this.first = snapshot;
    this.previous = this.snapshot;
    this.snapshot = snapshot;
    if (this.run) {
      Object.assign(this.run, {
        step: Math.max(this.run.step ?? 0, snapshot.step),
        samples_seen: snapshot.samples_seen,
        elapsed: snapshot.elapsed,
        instrument_seconds: snapshot.instrument_seconds ?? this.run.instrument_seconds,
        receivedAt: performance.now(),
        current_lr: snapshot.lr ?? this.run.current_lr, // the base lr with the schedule applied
      });
      this.emit('run', this);
    }
    this.emit('snapshot', this);
  }

  setView(fields) {
    Object.assign(this.view, fields);
    this.emit('view', this);
  }

  setConnection(state, detail = '') {
    this.connection = state;
    this.connectionDetail = detail;
    this.emit('connection', this);
  }

  /** A sentence for the person: kind 'error' | 'info'. */
  notice(message, kind = 'error') { this.emit('notice', { message, kind }); }

  /** True when this browser holds the run's control token (it started the run, in this tab or another). */
  get canControl() { return Boolean(this.runId && tokens.get(this.runId)); }

  get status() { return this.run?.status ?? null; }
  get isLive() { return LIVE.has(this.status); }
  get isFinal() { return FINAL.has(this.status) || this.status === INTERRUPTED; }
}
