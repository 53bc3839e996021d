/**
 * Transfer learning on the page: "fine-tune from here" starts a new run from the weights of the moment shown,
 * on another data set, with the layers a person chose frozen; "pretrained vs scratch" starts the same run twice,
 * from these weights and from random ones, and opens the two side by side. A fine-tuned run says where it
 * started, what it took, what starts random and why, and what is frozen.
 */

import { api } from '../api.js';
import { fillDatasets } from '../datasets.js';
import { setHidden, setText } from '../dom.js';

const SUBSET = 300; // a small set: where a pretrained start shows its head start most
const EPOCHS = 3;

export class FineTuneView {
  constructor(root, { store, session }) {
    this.root = root;
    this.store = store;
    this.session = session;
    const q = (role) => root.querySelector(`[data-role=${role}]`);
    this.form = q('form');
    this.from = q('from');
    this.origin = q('origin');
    this.dataset = q('dataset');
    this.subset = q('subset');
    this.epochs = q('epochs');
    this.freeze = q('freeze');
    this.error = q('error');
    this.buttons = [q('start'), q('compare')];
    this.datasets(store.boot.datasets);
    this.subset.value = String(SUBSET);
    this.epochs.value = String(EPOCHS);
    q('start').addEventListener('click', () => this.start());
    q('compare').addEventListener('click', () => this.compare());
    this.reset();
  }

  /** The data sets a run may be fine-tuned on: the server's, a person's own included. */
  datasets(list) { fillDatasets(this.dataset, list); }

  reset() {
    this.shownFor = null;
    this.key = null;
    this.showError('');
  }

  /** The run shown and the moment the timeline shows: what a fine-tuned run would start from. */
  update(state) {
    const run = state.run;
    const snap = state.snapshot;
    const can = Boolean(run?.capabilities?.inspectable && snap);
    const key = [run?.id, snap?.seq, can, run?.transfer?.run, this.busy].join('|');
    if (key === this.key) return;
    this.key = key;
    setHidden(this.root, !run);
    if (!run) return;
    setHidden(this.form, !can);
    this.showOrigin(run);
    if (!can) return;
    if (this.shownFor !== run.id) this.fill(run);
    this.from.textContent = `From run ${run.id} (${run.config.model} on ${run.config.dataset}) at step ${snap.step}, `
      + 'the moment the timeline shows: every layer whose shape fits the new data set starts with these weights, '
      + 'the others (a classifier for other classes) start random. A frozen layer is not trained at all.';
    for (const b of this.buttons) b.disabled = Boolean(this.busy);
  }

  /** New defaults for a run shown for the first time: another data set than its own, its layers to freeze. */
  fill(run) {
    this.shownFor = run.id;
    const other = this.store.boot.datasets.find((d) => d.name !== run.config.dataset && d.channels === this.channels(run));
    this.dataset.value = other?.name ?? run.config.dataset;
    const layers = this.store.boot.models.find((m) => m.name === run.config.model)?.freezable ?? [];
    this.freeze.replaceChildren(...layers.map((name) => {
      const label = document.createElement('label');
      label.className = 'check';
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.value = name;
      box.dataset.testid = `finetune-freeze-${name}`;
      label.append(box, ` ${name}`);
      return label;
    }));
  }

  channels(run) { return this.store.dataset(run.config.dataset)?.channels ?? 1; }

  /** Where this run (if fine-tuned) started, what it took, what starts random and what is frozen. */
  showOrigin(run) {
    const t = run.transfer;
    setHidden(this.origin, !t);
    if (!t) return;
    const fresh = t.fresh.map((f) => `${f.layer} (${f.reason})`).join('; ');
    this.origin.textContent = `Fine-tuned from run ${t.run} (${t.model} on ${t.dataset}) at step ${t.step}: `
      + `${t.taken.join(', ')} start with its weights${fresh ? `; ${fresh} start${t.fresh.length > 1 ? '' : 's'} random` : ''}`
      + `${t.frozen.length ? `; frozen: ${t.frozen.join(', ')}` : ''}. "Since step 0" below means since that start.`;
  }

  /** The new run's config: the run's own settings, on the chosen data set, from the moment shown. */
  config(freeze = true) {
    const { run, snapshot } = this.store;
    const subset = this.subset.value.trim();
    return {
      ...run.config,
      dataset: this.dataset.value,
      train_subset: subset === '' ? null : Number(subset),
      epochs: Number(this.epochs.value),
      probe_index: 0,
      init_from: { run: run.id, seq: snapshot.seq },
      freeze: freeze ? [...this.freeze.querySelectorAll('input:checked')].map((b) => b.value) : [],
    };
  }

  async start() {
    await this.request(() => this.session.start(this.config()));
  }

  /** The same run from these weights and from random ones (the same data, seed and subset), side by side. */
  async compare() {
    const base = this.config(false);
    await this.request(async () => {
      const sweep = await api.createSweep({ ...base, init_from: null }, { init_from: [base.init_from, null] });
      location.assign(`/compare?sweep=${encodeURIComponent(sweep.id)}`);
    });
  }

  async request(make) {
    this.busy = true;
    this.update(this.store);
    try {
      await make();
      this.showError('');
    } catch (err) {
      this.showError(err.message);
    } finally {
      this.busy = false;
      this.update(this.store);
    }
  }

  showError(message) {
    setText(this.error, message);
    setHidden(this.error, !message);
  }
}
