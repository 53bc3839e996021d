/** The page's one state object and its emitter: the only channel between views. */

import { api, tokens } from './api.js';
import { decodeFrame } from './codec.js';
import * as statuses from './statuses.js';

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

/** In `refs` (oldest first), the last one at or before `step`, else the first; null for none. */
export function atOrBefore(refs, step) {
  return refs.findLast((r) => r.step <= step) ?? refs[0] ?? null;
}

const HISTORY_MS = 2000; // a live run's filter history is fetched again at most this often
// The dense start (recorder.py): a snapshot after each of the first 10 batches, then every 5 up to batch 100. Live,
// those 100 steps pass in well under a second; the page shows them slowly, then catches up (TimelineView).
export const SLOW_UNTIL_STEP = 100;
const SLOW_KEY = 'filterscope.slowStart'; // '0': the person turned the slow start off (remembered per browser)

/**
 * Decoded frames by seq, newest use kept: the timeline revisits them. Bounded by their bytes (a decoded
 * frame holds its buffer and, once drawn, float copies: about three times the frame).
 */
export class FrameCache {
  constructor(budget = 64 * 1024 * 1024) {
    this.budget = budget;
    this.map = new Map();
    this.bytes = 0;
  }

  get(seq) {
    const frame = this.map.get(seq);
    if (frame) { // most recently used last
      this.map.delete(seq);
      this.map.set(seq, frame);
    }
    return frame ?? null;
  }

  has(seq) { return this.map.has(seq); }

  put(frame, pinned = () => false) {
    if (this.map.has(frame.seq)) this.bytes -= this.map.get(frame.seq).bytes;
    this.map.delete(frame.seq);
    this.map.set(frame.seq, frame);
    this.bytes += frame.bytes;
    for (const [seq, old] of this.map) {
      if (this.bytes <= this.budget || this.map.size <= 2) break;
      if (pinned(old)) continue;
      this.map.delete(seq);
      this.bytes -= old.bytes;
    }
  }

  clear() {
    this.map.clear();
    this.bytes = 0;
  }
}

/**
 * Events: 'reset' (views start from scratch), 'run' (run fields changed: status, step, lr...),
 * 'steps' (losses, update ratios, learning-rate changes), 'epoch', 'warning', 'snapshot' (the moment shown
 * changed), 'timeline' (snapshots known, the cursor, playing), 'view' (W/dW/ΔW/detects, scaling, selection),
 * 'connection', 'notice', 'analyses' (a snapshot has a filter analysis), 'analysis' (one was fetched, or the
 * test images it is cut from), 'filterhistory' (a filter's history over the run arrived), 'datasets' (one was
 * imported or deleted), 'usedataset' (a person chose one to train on).
 */
export class Store extends Emitter {
  constructor(boot) {
    super();
    this.boot = boot; // {datasets, models, defaults, version}
    // scale: 'run' (per layer, over the whole run so far), 'moment' (per layer, this snapshot), 'filter'.
    // show: 'now' (the filters at this moment), 'start' (at step 0), 'both' (side by side).
    this.view = { mode: 'weight', scale: 'run', show: 'now', selected: null };
    this.connection = 'idle';
    this.frames = new FrameCache();
    this.testPixels = null; // a data set's test images (mosaic.js TestPixels): what the top patches are cut from
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
    // ratios: per conv layer, ||ΔW|| / ||W|| of each step; cuts: how many times the run went back (addSteps)
    this.steps = { x: [], y: [], ratios: {}, cuts: 0 };
    this.warnings = []; // {kind, step, message}: the run's warnings, oldest first
    this.snapshot = null; // the moment every panel shows: the head while live, else the one scrubbed to
    this.head = null; // the newest snapshot the socket brought
    this.first = null; // the untrained network (seq 0): what every filter is compared with
    this.index = []; // every snapshot of the run, oldest first: {seq, step, epoch, epoch_end}
    this.cursor = null; // null: follow the head (live); else the seq of the moment wanted
    this.playing = false;
    // The slow start of a fresh live run: {until, startedAt} while the page shows its first steps slowly (the
    // cursor walks them one stored moment at a time), then null once it has caught up with the head.
    this.slow = null;
    this.frames?.clear();
    this.view.selected = null;
    this.analyses = []; // seqs of the snapshots with a filter analysis (step 0 and every epoch end), ascending
    this.tops = new Map(); // seq -> Map(layer name -> what each filter detects, as GET .../top/{layer} answers)
    this.filterHistories = new Map(); // `${layer}:${index}` -> {frame, at, loading, promise}
  }

  dataset(name) { return this.boot.datasets.find((d) => d.name === name) ?? null; }

  /** The data sets the server offers changed (a person imported or deleted one): GET /api/datasets's list. */
  setDatasets(list) {
    this.boot.datasets = list;
    this.emit('datasets', list);
  }

  /** A person chose data set `name` to train on next (the run form follows). */
  useDataset(name) { this.emit('usedataset', name); }

  /** The socket's hello: the full run with its history; everything before it is dropped. `slow`: the page may
   * show the run's start slowly (not when a moment was asked for); it does when the setting is on and the run
   * is live and not past its dense start yet. */
  hello(run, { slow = false } = {}) {
    this.blank();
    this.runId = run.id;
    this.run = { ...run, receivedAt: performance.now() };
    if (slow && this.slowStart && statuses.isLive(run.status) && (run.step ?? 0) < SLOW_UNTIL_STEP) {
      this.slow = { until: SLOW_UNTIL_STEP, startedAt: performance.now() };
      this.cursor = 0; // step 0 first; TimelineView moves the cursor on
    }
    this.history = [...(run.history ?? [])];
    this.warnings = [...(run.warnings ?? [])];
    this.analyses = [...(run.analyses ?? [])].sort((a, b) => a - b);
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
    if (this.slow && rest.status === 'paused') { // a pause stops training where it is: the page shows that moment
      this.endSlow();
      this.setCursor(null);
    }
    this.emit('run', this);
    if ('lr_changes' in rest) this.emit('steps', this); // marked on the loss chart
  }

  addSteps(steps, losses, ratios = {}) {
    // Steps are appended in order. Ones at or before the last known step mean the run went back to a checkpoint
    // (a resume) and trains them anew: what the page holds past that point is forgotten, as the server forgot it,
    // so the charts never get an x that goes backwards.
    const x = this.steps.x;
    if (steps.length && x.length && steps[0] <= x[x.length - 1]) {
      const keep = x.findIndex((s) => s >= steps[0]);
      this.steps.x = x.slice(0, keep);
      this.steps.y = this.steps.y.slice(0, keep);
      for (const name of Object.keys(this.steps.ratios)) this.steps.ratios[name] = this.steps.ratios[name].slice(0, keep);
      this.steps.cuts += 1; // the charts start again from the steps kept
    }
    const known = this.steps.ratios;
    for (const name of Object.keys(ratios)) known[name] ??= new Array(this.steps.x.length).fill(null);
    for (let i = 0; i < steps.length; i++) {
      this.steps.x.push(steps[i]);
      this.steps.y.push(losses[i]);
      for (const [name, row] of Object.entries(known)) row.push(ratios[name]?.[i] ?? null);
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

  /** A warning from the socket (each kind comes once). */
  addWarning({ kind, step, message }) {
    if (this.warnings.some((w) => w.kind === kind)) return;
    this.warnings = [...this.warnings, { kind, step, message }];
    this.emit('warning', this);
  }

  /** Merge snapshot references (from GET .../snapshots, or a frame that arrived) into the index. */
  addToIndex(refs) {
    const known = new Set(this.index.map((r) => r.seq));
    const fresh = refs.filter((r) => !known.has(r.seq))
      .map(({ seq, step, epoch, epoch_end: end }) => ({ seq, step, epoch, epoch_end: end }));
    if (!fresh.length) return;
    this.index = this.index.concat(fresh).sort((a, b) => a.seq - b.seq);
    this.emit('timeline', this);
  }

  /** A frame from the socket (or fetched for the timeline): cached; shown if it is the moment wanted. */
  keepFrame(frame) {
    this.frames.put(frame, (f) => f === this.snapshot || f === this.first || f === this.head);
    if (frame.seq === 0 || (this.first === null && frame.step === 0)) this.first = frame;
    this.addToIndex([frame]);
    if (this.cursor === frame.seq) this.show(frame);
  }

  /** The newest snapshot, from the socket: the head of the run, shown unless the person scrubbed back. */
  setSnapshot(snapshot) {
    this.head = snapshot;
    this.keepFrame(snapshot);
    if (this.cursor === null) this.show(snapshot);
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
  }

  show(frame) {
    if (this.snapshot === frame) return;
    this.snapshot = frame;
    this.emit('snapshot', this);
    this.emit('timeline', this);
  }

  /** Want the moment `seq` (null: live, the head); shown now if its frame is here, else when it arrives. */
  setCursor(seq) {
    this.cursor = seq;
    const frame = this.cursor === null ? this.head : this.frames.get(seq);
    if (frame) this.show(frame);
    this.emit('timeline', this);
  }

  /** Whether a fresh live run's start is shown slowly (on unless this browser turned it off). */
  get slowStart() {
    try {
      return localStorage.getItem(SLOW_KEY) !== '0';
    } catch {
      return true; // storage refused (a private window's policy): the default
    }
  }

  /** Turn the slow start on or off, remembered in this browser; off ends one under way (the page goes live). */
  setSlowStart(on) {
    try {
      localStorage.setItem(SLOW_KEY, on ? '1' : '0');
    } catch {
      // not remembered, still obeyed for this run
    }
    if (!on && this.slow) {
      this.endSlow();
      this.setCursor(null); // live at once
    } else {
      this.emit('timeline', this);
    }
  }

  /** The slow start is over (caught up, or the person went live or looked elsewhere). */
  endSlow() {
    if (!this.slow) return;
    this.slow = null;
    this.emit('timeline', this);
  }

  setPlaying(playing) {
    this.playing = playing;
    this.emit('timeline', this);
  }

  /** The snapshot at or before `step` (the first if none is), or null with no snapshots. */
  refAtStep(step) { return atOrBefore(this.index, step); }

  /** Position of the moment shown (or wanted) in the index; -1 before there is any. */
  get position() {
    const seq = this.cursor ?? this.snapshot?.seq ?? this.head?.seq;
    if (seq === undefined || seq === null) return -1;
    const at = this.index.findIndex((r) => r.seq === seq);
    return at >= 0 ? at : this.index.length - 1;
  }

  /** The socket's word that snapshot `seq` has a filter analysis (and what the analyses cost so far). */
  addAnalysis({ seq, analysis_seconds: seconds }) {
    if (!this.analyses.includes(seq)) this.analyses = [...this.analyses, seq].sort((a, b) => a - b);
    if (this.run) this.run.analysis_seconds = seconds;
    this.emit('analyses', this);
  }

  /** The latest analysed snapshot at or before `seq` (null if none): what the filters detect at that moment. */
  analysisAt(seq) {
    let found = null;
    for (const s of this.analyses) if (s <= seq) found = s;
    return found;
  }

  /** What each filter of `layer` detects at snapshot `seq`, once fetched (null until then). */
  top(seq, layer) { return seq === null ? null : this.tops.get(seq)?.get(layer) ?? null; }

  keepTop(seq, layer, answer) {
    if (!this.tops.has(seq)) this.tops.set(seq, new Map());
    this.tops.get(seq).set(layer, answer);
    this.emit('analysis', this);
  }

  /**
   * One filter's W, dW and ΔW at every snapshot (a decoded frame: arrays (snapshots, in, kh, kw), `snapshots`
   * the refs): fetched once per run, and again, at most every HISTORY_MS, while the run has snapshots past it.
   * Resolves to the latest one known (null while none could be read); 'filterhistory' is emitted on arrival.
   */
  filterHistory(layer, index) {
    if (!this.runId) return Promise.resolve(null);
    const key = `${layer}:${index}`;
    const known = this.filterHistories.get(key);
    const behind = known && !known.loading && this.index.length > (known.frame?.snapshots.length ?? 0)
      && performance.now() - known.at > HISTORY_MS;
    if (known && !behind) return known.promise;
    const id = this.runId;
    const entry = { frame: known?.frame ?? null, at: performance.now(), loading: true };
    const mine = () => this.runId === id && this.filterHistories.get(key) === entry;
    entry.promise = api.trajectory(id, layer, index).then((buffer) => {
      if (!mine()) return null;
      entry.frame = decodeFrame(buffer);
      this.emit('filterhistory', this);
      return entry.frame;
    }).catch(() => entry.frame).finally(() => {
      entry.loading = false;
      entry.at = performance.now();
    });
    this.filterHistories.set(key, entry);
    return entry.promise;
  }

  /** What filterHistory last brought for this filter of this run, or null. */
  knownFilterHistory(layer, index) { return this.filterHistories.get(`${layer}:${index}`)?.frame ?? null; }

  setTestPixels(pixels) {
    this.testPixels = pixels;
    this.emit('analysis', this);
  }

  setView(fields) {
    Object.assign(this.view, fields);
    if (fields.selected && this.slow) { // a filter picked to look at: the live run, not a replay of its start (whose
      this.endSlow(); // every moment would have the inspector replay training to work its step)
      this.setCursor(null);
    }
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

  /** True when the person looks at a moment they chose: not the live head, nor the slow start on its way there
   * (that moment is the page's). */
  get lookingBack() { return this.cursor !== null && !this.slow; }

  get status() { return this.run?.status ?? null; }
  get isLive() { return statuses.isLive(this.status); }
  /** True when nothing trains the run (final, or interrupted: its socket stays quiet until it is resumed). */
  get isFinal() { return statuses.isEnded(this.status); }
}
