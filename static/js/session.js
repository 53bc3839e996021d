/** What the buttons do: start, attach to and leave runs, and the run's HTTP actions. */

import { api } from './api.js';
import { decodeFrame } from './codec.js';
import { TestPixels } from './mosaic.js';
import { RunSocket } from './socket.js';

const PREFETCH = { playing: 12, seeking: 3 }; // frames fetched ahead of the moment shown
const PARALLEL = 4; // requests in flight at once
const INDEX_MS = 1000; // a live run's snapshot list, asked for again past a gap in the stream, at most this often

export class Session {
  constructor(store) {
    this.store = store;
    this.socket = null;
    this.loading = new Map(); // seq -> promise of its frame
    this.queue = [];
    this.wantStep = null; // a moment asked for by the URL, sought once the snapshot list is known
    this.topsLoading = new Set(); // `${run}:${seq}:${layer}` of the analyses being fetched
    this.pixelsLoading = null; // the data set whose test images are being fetched
    this.indexTimer = null; // a snapshot list asked for soon (refreshIndex)
  }

  /** Watch run `id`: open its socket; the hello resets the views and replays the history. `step`: open the
   * run at the snapshot at or before this step instead of live. */
  attach(id, { step = null } = {}) {
    this.socket?.close();
    const { store } = this;
    store.clear();
    store.notice(null); // what was said about the run shown before no longer applies
    store.runId = id;
    this.loading.clear();
    this.queue = [];
    this.wantStep = step;
    this.socket = new RunSocket(id, {
      onMessage: (msg) => this.onMessage(msg),
      onSnapshot: (frame) => this.onSnapshot(id, frame),
      onState: (state, detail) => this.onState(id, state, detail),
      isFinal: () => store.isFinal,
    });
    this.socket.connect();
    this.setUrl(id);
  }

  /** A live frame. A slow page is sent the newest, not every one (the hub drops what it cannot send in
   * time): past a gap, the list is asked for again, so the timeline still holds every stored moment. */
  onSnapshot(id, frame) {
    const { index } = this.store;
    const gap = index.length > 0 && frame.seq > index[index.length - 1].seq + 1;
    this.store.setSnapshot(frame);
    if (gap) this.refreshIndex(id);
  }

  /** loadIndex at most once every INDEX_MS while frames stream in. */
  refreshIndex(id) {
    if (this.indexTimer) return;
    this.indexTimer = setTimeout(() => {
      this.indexTimer = null;
      if (this.store.runId === id) this.loadIndex(id);
    }, INDEX_MS);
  }

  onState(id, state, detail) {
    if (state === 'gone') {
      this.detach();
      this.store.notice(detail || `There is no run ${id}; it may have been deleted.`);
      return;
    }
    this.store.setConnection(state, detail);
  }

  onMessage(msg) {
    const { store } = this;
    switch (msg.type) {
      case 'hello': // a fresh live run's start is shown slowly, unless the URL asked for a moment
        store.hello(msg.run, { slow: this.wantStep === null });
        this.loadIndex(msg.run.id);
        break;
      case 'steps': store.addSteps(msg.steps, msg.losses, msg.ratios); break;
      case 'epoch': store.addEpoch(msg); break;
      case 'status': { // its lr_changes, as the server lists them; once it has ended, every moment it stored
        const was = store.status;
        store.patchRun(msg);
        // An interrupted run resumed (from this page, another tab or browser) goes on from its last checkpoint:
        // the server forgot what came after it, so the page reads the run again instead of appending the
        // steps and snapshots it trains anew to the ones it forgot.
        if (was === 'interrupted' && !store.isFinal) this.attach(store.runId);
        else if (store.isFinal) this.refreshIndex(store.runId);
        break;
      }
      case 'warning': store.addWarning(msg); break;
      case 'error': store.patchRun({ message: msg.message }); store.notice(msg.message); break;
      case 'analysis': store.addAnalysis(msg); break;
      default: break; // newer servers may add message types; ignore what we do not know
    }
  }

  /** The run's snapshot list (the socket only brings the first and the latest, then new ones). */
  async loadIndex(id) {
    try {
      const list = await api.snapshots(id);
      if (this.store.runId !== id) return;
      this.store.addToIndex(list);
      this.prefetchAll();
      if (this.wantStep !== null) {
        const step = this.wantStep;
        this.wantStep = null;
        const at = this.store.refAtStep(step);
        if (at) this.seek(at.seq);
      }
    } catch {
      // Without the list the timeline knows the snapshots the socket brings.
    }
  }

  /** Show the moment `seq` (null: live). Its frame comes from the cache or the server; frames after it
   * are fetched ahead, so that playing and scrubbing find them waiting. */
  /** A moment a person asked for elsewhere than the timeline (a warning's step, the filmstrip): a slow start
   * under way ends there, instead of moving the page on past it. */
  look(seq) {
    this.store.endSlow();
    this.seek(seq);
  }

  seek(seq) {
    const { store } = this;
    store.setCursor(seq);
    if (seq === null) return;
    // What was only fetched ahead for an earlier moment waits behind this one, or is dropped when scrubbing.
    const moving = store.playing || store.slow !== null; // a replay, or the slow start: frames ahead are wanted
    if (!moving) this.queue = this.queue.filter((job) => job.background);
    this.fetchFrame(seq, true);
    const at = store.index.findIndex((r) => r.seq === seq);
    const ahead = moving ? PREFETCH.playing : PREFETCH.seeking;
    for (const ref of store.index.slice(at + 1, at + 1 + ahead)) this.fetchFrame(ref.seq, false);
  }

  /** An ended run is looked at, not trained: fetch its moments in the background (as many as the cache holds
   * comfortably), so that scrubbing finds them waiting. A training run's CPU is left to training. */
  prefetchAll() {
    const { store } = this;
    if (store.isLive) return;
    const each = (store.head?.bytes ?? 0) || 1;
    const room = Math.floor(store.frames.budget / 2 / each);
    for (const ref of store.index.slice(0, room)) this.fetchFrame(ref.seq, false, true);
  }

  /** Fetch (once) the frame of snapshot `seq`; `urgent` puts it before what is only prefetched. */
  fetchFrame(seq, urgent, background = false) {
    const { store } = this;
    if (store.frames.has(seq) || this.loading.has(seq)) return;
    const id = store.runId;
    const job = { seq, id, background };
    if (urgent) this.queue.unshift(job);
    else this.queue.push(job);
    this.pump();
  }

  pump() {
    while (this.loading.size < PARALLEL && this.queue.length) {
      const { seq, id } = this.queue.shift();
      if (id !== this.store.runId || this.store.frames.has(seq) || this.loading.has(seq)) continue;
      const done = api.frame(id, seq).then((buffer) => {
        if (this.store.runId === id) this.store.keepFrame(decodeFrame(buffer));
      }).catch(() => {
        if (this.store.cursor === seq) this.store.notice(`Snapshot ${seq} could not be loaded.`);
      }).finally(() => {
        this.loading.delete(seq);
        this.pump();
      });
      this.loading.set(seq, done);
    }
  }

  /** What each filter detects at the moment shown, when a view needs it (the detects mode, the inspector):
   * the analysis at or before it (and step 0's, to show beside it), every layer, and the test images once. */
  loadAnalysis() {
    const { store } = this;
    const snap = store.snapshot;
    const { mode, show, selected } = store.view;
    if (!snap || !store.runId || (mode !== 'detects' && !selected)) return;
    const seqs = new Set([store.analysisAt(snap.seq)]);
    if (mode === 'detects' && show !== 'now') seqs.add(store.analyses[0] ?? null);
    for (const seq of seqs) {
      if (seq === null) continue;
      for (const layer of snap.layers) this.fetchTop(seq, layer.name);
    }
    if (store.analyses.length) this.fetchTestPixels(store.run?.config?.dataset); // none: no patches to cut
  }

  fetchTop(seq, layer) {
    const { store } = this;
    const id = store.runId;
    const key = `${id}:${seq}:${layer}`;
    if (store.top(seq, layer) || this.topsLoading.has(key)) return;
    this.topsLoading.add(key);
    api.top(id, seq, layer).then((answer) => {
      if (store.runId === id) store.keepTop(seq, layer, answer);
    }).catch(() => {
      // Shown as "no analysis" until the next moment asks again.
    }).finally(() => this.topsLoading.delete(key));
  }

  fetchTestPixels(dataset) {
    const { store } = this;
    if (!dataset || store.testPixels?.dataset === dataset || this.pixelsLoading === dataset) return;
    this.pixelsLoading = dataset;
    api.testPixels(dataset).then(({ buffer, shape }) => {
      store.setTestPixels(new TestPixels(dataset, buffer, shape));
    }).catch((err) => store.notice(err.message)).finally(() => { this.pixelsLoading = null; });
  }

  /** Leave the run (it keeps going on the server) and go back to an empty page. */
  detach() {
    this.socket?.close();
    this.socket = null;
    this.store.clear();
    this.store.setConnection('idle');
    this.setUrl(null);
  }

  setUrl(id) {
    const url = new URL(location.href);
    if (id) url.searchParams.set('run', id);
    else for (const key of ['run', 'step', 'filter']) url.searchParams.delete(key);
    history.replaceState(null, '', url);
  }

  /**
   * Each action returns the run on success; errors propagate as ApiError for the caller to show.
   * The store is not patched from these answers: the socket's `status` message is the one source
   * of truth, so an answer overtaken by a later status message cannot roll the state back.
   */
  async start(config) {
    const run = await api.createRun(config);
    this.attach(run.id);
    return run;
  }

  act(name) { return api[name](this.store.runId); }

  pause() { return this.act('pause'); }
  /** Resume run `id` (the one shown by default). A paused one goes on; an interrupted one continues from its last
   * checkpoint, so its history is read again: here, unless its socket's status message already did that. */
  async resume(id = this.store.runId) {
    const paused = id === this.store.runId && this.store.status === 'paused';
    const socket = this.socket;
    const run = await api.resume(id);
    if (!paused && !(id === this.store.runId && this.socket !== socket)) this.attach(run.id);
    return run;
  }
  step() { return this.act('step'); }
  stop() { return this.act('stop'); }

  setLr(lr) { return api.setLr(this.store.runId, lr); }

  setProbe(index) { return api.setProbe(this.store.runId, index); }
  uploadProbe(file) { return api.uploadProbe(this.store.runId, file); }
  snapshots() { return api.snapshots(this.store.runId); }
  inspect(file, seq) { return api.inspect(this.store.runId, file, seq); }
}
