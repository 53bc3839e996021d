/** What the buttons do: start, attach to and leave runs, and the run's HTTP actions. */

import { api } from './api.js';
import { RunSocket } from './socket.js';

export class Session {
  constructor(store) {
    this.store = store;
    this.socket = null;
  }

  /** Watch run `id`: open its socket; the hello resets the views and replays the history. */
  attach(id) {
    this.socket?.close();
    const { store } = this;
    store.clear();
    store.runId = id;
    this.socket = new RunSocket(id, {
      onMessage: (msg) => this.onMessage(msg),
      onSnapshot: (frame) => store.setSnapshot(frame),
      onState: (state, detail) => this.onState(id, state, detail),
      isFinal: () => store.isFinal,
    });
    this.socket.connect();
    this.setUrl(id);
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
      case 'hello': store.hello(msg.run); break;
      case 'steps': store.addSteps(msg.steps, msg.losses); break;
      case 'epoch': store.addEpoch(msg); break;
      case 'status': store.patchRun(msg); break;
      case 'error': store.patchRun({ message: msg.message }); store.notice(msg.message); break;
      default: break; // newer servers may add message types; ignore what we do not know
    }
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
    else url.searchParams.delete('run');
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
  /** Resume a paused run; an interrupted one continues from its last checkpoint, so its history is read again. */
  async resume() {
    const interrupted = this.store.status === 'interrupted';
    const run = await this.act('resume');
    if (interrupted) this.attach(run.id);
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
