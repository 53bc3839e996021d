/** Where the run is: its state, epoch and run progress bars, elapsed time, the live connection. */

import { fmt } from '../colormap.js';
import { setAttr, setHidden, setProp, setStyle, setText } from '../dom.js';
import { isFinal } from '../statuses.js';

// The badge's word where it is not the status's own name (statuses.js lists them all).
const STATUS_TEXT = { running: 'training' };

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, '0')}`;
}

export class ProgressView {
  constructor(container) {
    this.badge = container.querySelector('[data-role=status]');
    this.conn = container.querySelector('[data-role=connection]');
    this.epochBar = container.querySelector('[data-role=epoch-bar]');
    this.epochText = container.querySelector('[data-role=epoch-text]');
    this.runBar = container.querySelector('[data-role=run-bar]');
    this.runText = container.querySelector('[data-role=run-text]');
    this.elapsed = container.querySelector('[data-role=elapsed]');
    this.facts = container.querySelector('[data-role=facts]');
    this.message = container.querySelector('[data-role=message]');
    this.run = null;
    setInterval(() => this.tick(), 500);
    this.reset();
  }

  reset() {
    this.run = null;
    this.render();
  }

  update(state) {
    this.run = state.run;
    this.render();
  }

  /** Connection state from the store: 'idle' | 'connecting' | 'live' | 'reconnecting' | 'gone' | 'closed'. */
  connection(state, detail) {
    const offline = state === 'reconnecting';
    if (offline && !this.offline) this.lostAt = performance.now(); // the clock stops where the contact did
    this.offline = offline;
    this.render();
    this.conn.dataset.state = state;
    this.conn.textContent = { idle: '', connecting: 'connecting…', live: 'live', closed: '', gone: 'run not found' }[state]
      ?? detail ?? state;
    this.conn.title = detail || '';
  }

  render() {
    const run = this.run;
    const status = run?.status ?? 'idle';
    // While the server cannot be reached, what the run is doing there is unknown: say so, not its last state.
    const offline = run && this.offline && !isFinal(status);
    setAttr(this.badge, 'data-status', offline ? 'offline' : status);
    setText(this.badge, offline ? 'server unreachable' : run ? STATUS_TEXT[status] ?? status : 'no run');
    setProp(this.badge, 'title', offline ? `The page lost its connection to the server; the run was ${STATUS_TEXT[status] ?? status} when it did.` : '');
    const spe = run?.steps_per_epoch || 0;
    const total = run?.total_steps || 0;
    const step = run?.step ?? 0;
    const epochs = run?.config?.epochs ?? 0;
    // The epoch a step belongs to: step 250 of 250 a epoch is the last batch of epoch 1, not batch 0 of epoch 2.
    const current = spe ? Math.min(epochs, Math.max(1, Math.ceil(step / spe))) : 0;
    const inEpoch = spe ? Math.max(0, step - (current - 1) * spe) : 0;
    this.setBar(this.epochBar, spe ? inEpoch / spe : 0);
    setText(this.epochText, run ? `epoch ${current} of ${epochs} · batch ${inEpoch} of ${spe}` : '–');
    this.setBar(this.runBar, total ? step / total : 0);
    setText(this.runText, run ? `step ${step} of ${total}` : '–');
    const waiting = status === 'queued' && run?.queue_position
      ? `waiting for a training slot (${run.queue_position} in line): it starts when a run ahead of it ends or pauses` : '';
    setText(this.facts, run
      ? [waiting, this.lrText(run), `${(run.samples_seen ?? 0).toLocaleString('en')} images seen`, this.costText(run),
        `run ${run.id}`].filter(Boolean).join(' · ')
      : '');
    const bad = status === 'diverged' || status === 'failed';
    setHidden(this.message, !(run?.message));
    setText(this.message, run?.message ?? '');
    this.message.classList.toggle('bad', bad);
    this.tick();
  }

  /** The rate of the latest batch, and the base rate when a schedule scales it. */
  lrText(run) {
    const base = run.lr ?? run.config?.lr;
    const now = run.current_lr ?? base;
    const schedule = run.config?.lr_schedule;
    return schedule && schedule !== 'constant' ? `lr ${fmt(now)} (${schedule} from ${fmt(base)})` : `lr ${fmt(base)}`;
  }

  /** What watching costs: the share of training time the engine spent on snapshots and loss messages. */
  costText(run) {
    if (!(run.elapsed > 0.5) || run.instrument_seconds == null) return '';
    return `snapshots ${(100 * run.instrument_seconds / run.elapsed).toFixed(1)}% of training time`;
  }

  setBar(bar, fraction) {
    const f = Math.max(0, Math.min(1, fraction || 0));
    setStyle(bar, 'width', `${(100 * f).toFixed(1)}%`);
    setAttr(bar.parentElement, 'aria-valuenow', String(Math.round(100 * f)));
  }

  /** Elapsed time ticks locally between server updates while the run trains. */
  tick() {
    const run = this.run;
    if (!run) {
      setText(this.elapsed, '0:00');
      return;
    }
    let t = run.elapsed ?? 0;
    // Only while the run is known to train: not past the moment the server stopped answering (it may be gone).
    const now = this.offline ? this.lostAt : performance.now();
    if (run.status === 'running' && run.receivedAt) t += Math.max(0, now - run.receivedAt) / 1000;
    setText(this.elapsed, clock(t));
  }
}
