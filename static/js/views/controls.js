/** The run's settings and buttons: start, pause/resume, step, stop, new run; live learning rate; presets and
 * one-click sweeps. */

import { api } from '../api.js';
import { fillDatasets } from '../datasets.js';
import { setText } from '../dom.js';

/** A config field's kind in the run config's JSON schema: 'number', 'boolean' or 'choice' (a nullable field is
 * anyOf [its type, null]). */
function kindOf(prop) {
  const type = (prop.anyOf ?? [prop]).map((p) => p.type).find((t) => t && t !== 'null');
  return type === 'integer' || type === 'number' ? 'number' : type === 'boolean' ? 'boolean' : 'choice';
}
// Settings a teacher reaches for in one click: the form is filled, Start trains it.
export const PRESETS = {
  // 500 images memorised in about half a minute: train accuracy reaches 100 % while test accuracy stays
  // behind. Then try dropout 0.5, weight decay 0.005 or augmentation, and watch the gap narrow.
  overfit: {
    dataset: 'mnist', model: 'tiny', optimizer: 'adam', lr: 0.002, lr_schedule: 'constant', batch_size: 32,
    epochs: 60, weight_decay: 0, dropout: 0, augment: false, init: 'small', train_subset: 500, snapshot_every: 20,
  },
};
const PRESET_HINTS = {
  overfit: 'See overfitting: 500 training images, 60 epochs, no regularisation. Watch train accuracy (purple) reach 100 % while test accuracy (green) stays behind; then try dropout 0.5, weight decay or augmentation, and compare the gap.',
};
// One line under the form on what the initial-weights choice means for the filters a person will watch.
const INIT_HINTS = {
  'small-first': "Small initial weights in the first layer: its kernels start as faint noise, so the strokes and edges you see are what training wrote; the deeper layers start at PyTorch's scale, which keeps more of their filters alive.",
  small: 'Small initial weights in every layer: kernels start as faint noise, so what you see is what training wrote; more of the deeper filters die, and classic may not train on shapes-color.',
  default: "PyTorch's default initial weights: kernels start as strong noise, and much of it is still there at the end.",
};
const SHIPPED_NOTE = 'This run came with filterscope: tiny trained on Fashion-MNIST for 5 epochs (scripts/pretrain.py). '
  + 'Explore it, try your own images, or fine-tune from it; it trains no further.';
const LIVE_FIELDS = new Set(['lr']); // the only setting a live run accepts (PATCH)

export class ControlsView {
  constructor(container, { store, session }) {
    this.store = store;
    this.session = session;
    this.form = container.querySelector('form');
    this.error = container.querySelector('[data-role=error]');
    this.buttons = Object.fromEntries(
      [...container.querySelectorAll('button[data-action]')].map((b) => [b.dataset.action, b]),
    );
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.start();
    });
    for (const [action, button] of Object.entries(this.buttons)) {
      if (action !== 'start') button.addEventListener('click', () => this.act(action));
    }
    this.form.elements.lr.addEventListener('change', () => this.changeLr());
    this.model = this.form.elements.model.value;
    this.form.elements.model.addEventListener('change', () => this.modelLr());
    this.initHint = container.querySelector('[data-role=init-hint]');
    this.viewerNote = container.querySelector('[data-role=viewer]');
    this.viewerText = this.viewerNote.textContent; // the template's: a run started in another browser
    this.producerNote = container.querySelector('[data-role=producer]');
    this.form.elements.init.addEventListener('change', () => this.showInitHint());
    this.showInitHint();
    this.form.addEventListener('input', (e) => this.clearField(e.target.name));
    this.presetHint = container.querySelector('[data-role=preset-hint]');
    this.presets = [...container.querySelectorAll('button[data-preset]')];
    this.sweeps = [...container.querySelectorAll('button[data-sweep]')];
    for (const button of this.sweeps) button.addEventListener('click', () => this.sweep(button.dataset.sweep));
    for (const button of this.presets) button.addEventListener('click', () => this.preset(button.dataset.preset));
    document.addEventListener('keydown', (e) => this.onKey(e));
    this.reset();
  }

  reset() {
    this.busy = false;
    this.shownKey = null;
  }

  /** The data sets offered changed (one imported or deleted): the form's choices follow, its value kept. */
  datasets(list) { fillDatasets(this.form.elements.dataset, list); }

  /** Train on data set `name` next: chosen in the form, which comes into view. */
  useDataset(name) {
    const select = this.form.elements.dataset;
    select.value = name;
    this.clearField('dataset');
    select.scrollIntoView({ block: 'center', behavior: 'smooth' });
    select.focus({ preventScroll: true });
  }

  /** The form as a run config, field by field as the config's schema has them: numbers as numbers (an empty
   * box becomes null and the server says why). A field the form does not show keeps its default. */
  config() {
    const el = this.form.elements;
    const cfg = {};
    for (const [name, prop] of Object.entries(this.store.boot.config_schema.properties)) {
      const field = el.namedItem(name);
      if (!field) continue;
      const kind = kindOf(prop);
      if (kind === 'boolean') cfg[name] = field.checked;
      else if (kind === 'number') cfg[name] = field.value.trim() === '' ? null : Number(field.value.trim());
      else cfg[name] = field.value;
    }
    return cfg;
  }

  /** One click, one comparison: a sweep of the form's settings (or of the overfitting setup), opened side by side. */
  async sweep(kind) {
    this.showError('');
    const base = kind === 'dropout' ? { ...this.config(), ...PRESETS.overfit } : this.config();
    const lr = base.lr;
    const vary = kind === 'dropout' ? { dropout: [0, 0.5] }
      : { lr: [lr / 10, lr, lr * 10].map((v) => Number(v.toPrecision(3))) };
    const ok = await this.run(async () => {
      const sweep = await api.createSweep(base, vary);
      location.assign(`/compare?sweep=${encodeURIComponent(sweep.id)}`);
    });
    if (!ok) this.form.scrollIntoView({ block: 'nearest' });
  }

  /** Fill the form with a preset's settings (the person still presses Start). */
  preset(name) {
    this.fill(PRESETS[name]);
    this.presetHint.textContent = PRESET_HINTS[name] ?? '';
    this.presetHint.hidden = !this.presetHint.textContent;
    this.showError('');
  }

  /** A model has a learning rate of its own for Adam (`classic` trains at 2e-3, the others at 5e-3, as the server
   * gives a config that names none): the box follows a change of model unless the person has set another. */
  modelLr() {
    const el = this.form.elements;
    const lrOf = (name) => this.store.boot.models.find((m) => m.name === name)?.lr;
    const before = lrOf(this.model);
    this.model = el.model.value;
    const after = lrOf(this.model);
    if (el.optimizer.value === 'adam' && after !== undefined && Number(el.lr.value) === before) {
      el.lr.value = String(after);
    }
  }

  showInitHint() { this.initHint.textContent = INIT_HINTS[this.form.elements.init.value] ?? ''; }

  /** Fill the form from a run's config (when attaching to a run started elsewhere). */
  fill(config) {
    const el = this.form.elements;
    for (const [name, value] of Object.entries(config ?? {})) {
      const field = el[name];
      if (!field || field instanceof RadioNodeList) continue;
      if (field.type === 'checkbox') field.checked = Boolean(value);
      else field.value = value === null || value === undefined ? '' : String(value);
    }
    this.model = el.model.value;
    this.showInitHint();
  }

  update(state) {
    const run = state.run;
    // Called at every tick of the stream: nothing to do unless what the form shows has changed.
    const key = [run?.id, run?.status, run?.lr, run?.queue_position, this.busy, state.connection, state.runId,
      state.canControl, document.activeElement === this.form.elements.lr, run?.producer?.pid].join('|');
    if (key === this.shownKey) return;
    this.shownKey = key;
    if (run && run.id !== this.filledFor) {
      this.filledFor = run.id;
      this.fill(run.config);
    }
    if (run && document.activeElement !== this.form.elements.lr && run.lr !== undefined && run.lr !== null) {
      // The base rate (the schedule scales it per batch; the progress panel shows the current one).
      this.form.elements.lr.value = String(Number(run.lr.toPrecision(4)));
    }
    const status = state.status;
    const live = state.isLive;
    const attached = Boolean(state.runId);
    // No control reaches a server the page cannot reach: everything waits for the connection to come back.
    const offline = attached && state.connection === 'reconnecting';
    // A shared link watches: only the browser that started the run holds its token and may control it.
    // Trained by another process (`filterscope train`): the server follows it but cannot reach into it.
    const watched = attached && run?.kind === 'watch';
    const producer = attached && !state.isFinal ? run?.producer : null;
    if (watched) {
      this.producerNote.textContent = `This is ${run.config.model}, a person's own model, recorded by their training `
        + `script (filterscope.watch${producer ? `, process ${producer.pid}` : ''}): pause, step, stop and the `
        + 'learning rate belong to that script, and an image cannot be run through the model here, since the '
        + 'server has neither its code nor its weights at each moment. Everything recorded is here to explore.';
    } else if (producer) {
      this.producerNote.textContent = `This run is trained by process ${producer.pid} (${producer.what ?? 'another '
        + 'process'}), not by this server: you can watch it live and try your own images, but only that process `
        + 'can pause or stop it (Ctrl+C there interrupts it; then it can be resumed here).';
    }
    this.producerNote.hidden = !producer && !watched;
    const viewer = attached && (!state.canControl || Boolean(producer) || watched);
    this.viewerNote.hidden = !viewer || Boolean(producer) || watched;
    if (!this.viewerNote.hidden) { // a run that came with filterscope was started by nobody's browser
      setText(this.viewerNote, run?.shipped ? SHIPPED_NOTE : this.viewerText);
    }
    for (const action of ['pause', 'step', 'stop']) this.buttons[action].hidden = viewer;
    for (const field of this.form.elements) {
      if (!field.name) continue;
      const liveField = LIVE_FIELDS.has(field.name) && !viewer && !offline
        && !(status === 'queued' && run?.queue_position);
      field.disabled = this.busy || (live && !liveField) || (attached && !run && !liveField);
      if (field.name === 'lr') {
        field.title = live && viewer ? 'Only the browser that started this run can change its learning rate.'
          : live && liveField ? 'Change it while the run trains: the next batch uses it.' : '';
      }
    }
    for (const button of this.presets) button.disabled = this.busy || live || (attached && !run);
    for (const button of this.sweeps) button.disabled = this.busy || offline;
    const b = this.buttons;
    b.start.disabled = this.busy || live || (attached && !run) || offline;
    const resumable = status === 'paused' || status === 'interrupted';
    b.pause.disabled = this.busy || !(status === 'running' || status === 'queued' || resumable);
    b.pause.textContent = resumable ? 'Resume' : 'Pause';
    b.pause.title = status === 'interrupted'
      ? 'The server stopped while this run trained: go on from its last checkpoint'
      : 'Pause or resume (space)';
    b.pause.dataset.action = 'pause';
    // A run waiting in the queue has not trained: nothing to pause or step; Stop cancels it.
    const waiting = status === 'queued' && Boolean(run?.queue_position);
    if (offline || waiting) b.pause.disabled = true;
    b.step.disabled = this.busy || !live || offline || waiting;
    b.stop.textContent = waiting ? 'Cancel' : 'Stop';
    b.stop.disabled = this.busy || !live || offline;
    b.new.disabled = this.busy || !attached;
    this.giveFocusBack();
  }

  /** The button a request locked gets the keyboard back when it is free: Step stays under Enter for the next
   * step; Start, locked for the run it started, hands it to Pause. Not once the person has moved it. */
  giveFocusBack() {
    const had = this.refocus;
    if (!had || this.busy) return;
    const now = document.activeElement;
    if (now && now !== document.body && now !== had) {
      this.refocus = null; // the keyboard went elsewhere
      return;
    }
    const b = this.buttons;
    let target = !had.disabled && !had.hidden ? had : null;
    if (had === b.start && this.error.hidden) { // started: Pause once the run is live (its status comes after)
      target = !b.pause.disabled && !b.pause.hidden ? b.pause : null;
      if (!target && !this.store.isFinal) return;
    }
    if (target && target !== now) target.focus({ preventScroll: true }); // the page stays where the person has it
    this.refocus = null;
  }

  async start() {
    this.showError('');
    await this.run(() => this.session.start(this.config()));
  }

  async act(action) {
    const s = this.session;
    const status = this.store.status;
    const resumable = status === 'paused' || status === 'interrupted';
    if (action === 'pause') await this.run(() => (resumable ? s.resume() : s.pause()));
    else if (action === 'step') await this.run(() => s.step());
    else if (action === 'stop') await this.run(() => s.stop());
    else if (action === 'new') {
      const left = this.store.isLive && this.store.canControl ? this.store.runId : null;
      s.detach();
      if (left) {
        this.store.notice(`Run ${left} keeps training in the background: it is in the Runs list, where you can `
          + 'open or stop it.', 'info');
      }
      this.filledFor = null;
      this.showError('');
    }
  }

  async changeLr() {
    if (!this.store.isLive || !this.store.canControl) return;
    const field = this.form.elements.lr;
    const text = field.value.trim();
    const ok = await this.run(() => this.session.setLr(text === '' ? null : Number(text)));
    if (!ok && this.store.run) field.value = String(this.store.run.lr);
  }

  /** Run one request with the buttons locked; show the server's sentence if it fails. */
  async run(request) {
    // A locked button loses the keyboard (the browser moves it to the page): given back once it is free again.
    const had = document.activeElement;
    this.refocus = had && had !== document.body && this.form.contains(had) ? had : null;
    this.busy = true;
    this.update(this.store);
    try {
      await request();
      this.showError('');
      return true;
    } catch (err) {
      this.showError(err.message, err.fields);
      return false;
    } finally {
      this.busy = false;
      this.update(this.store);
    }
  }

  showError(message, fields = {}) {
    this.error.textContent = message;
    this.error.hidden = !message;
    for (const field of this.form.elements) {
      if (field.name) field.toggleAttribute('aria-invalid', Boolean(fields[field.name]));
    }
  }

  clearField(name) {
    const field = name && this.form.elements[name];
    if (field?.removeAttribute) field.removeAttribute('aria-invalid');
  }

  /** Space pauses and resumes, unless a text box, menu or button has the keyboard. */
  onKey(e) {
    if (e.key !== ' ' || e.ctrlKey || e.metaKey || e.altKey) return;
    if (this.store.lookingBack) return; // space replays (the timeline's)
    if (e.target.closest?.('input, select, textarea, button, [contenteditable]')) return;
    if (this.buttons.pause.disabled) return;
    e.preventDefault();
    this.act('pause');
  }
}
