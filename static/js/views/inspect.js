/** Upload panel: run a dropped, picked, pasted or drawn image through the model at a chosen snapshot. */

import { decodeBase64Arrays } from '../codec.js';
import { DrawPad } from '../drawpad.js';
import { FeatureMapLayers } from '../fmapgrid.js';
import { requestDraw } from '../frame.js';
import { ProbBars } from '../probbars.js';

export class InspectView {
  constructor(container, { store, session }) {
    this.store = store;
    this.session = session;
    const $ = (role) => container.querySelector(`[data-role=${role}]`);
    this.drop = $('drop');
    this.fileInput = $('file');
    this.result = $('result');
    this.placeholder = $('placeholder');
    this.input = $('input');
    this.inputCaption = $('input-caption');
    this.prediction = $('prediction');
    this.slider = $('slider');
    this.sliderText = $('snapshot-text');
    this.error = $('error');
    this.useProbe = $('use-probe');
    this.bars = new ProbBars($('probs'));
    this.layers = new FeatureMapLayers($('layers'), { maxHeight: 160, testid: 'inspect-fmap' });
    this.pad = new DrawPad($('pad'), (file) => this.inspect(file));
    $('pad-clear').addEventListener('click', () => this.pad.clear());
    $('pad-send').addEventListener('click', () => this.pad.send());

    this.drop.addEventListener('click', () => this.fileInput.click());
    this.drop.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        this.fileInput.click();
      }
    });
    this.fileInput.addEventListener('change', () => {
      if (this.fileInput.files[0]) this.inspect(this.fileInput.files[0]);
      this.fileInput.value = '';
    });
    this.drop.addEventListener('dragover', (e) => {
      e.preventDefault();
      this.drop.classList.add('over');
    });
    this.drop.addEventListener('dragleave', () => this.drop.classList.remove('over'));
    this.drop.addEventListener('drop', (e) => {
      e.preventDefault();
      this.drop.classList.remove('over');
      const file = e.dataTransfer?.files?.[0];
      if (file) this.inspect(file);
    });
    document.addEventListener('paste', (e) => {
      if (e.target.closest?.('input, textarea, [contenteditable]')) return;
      const item = [...(e.clipboardData?.items ?? [])].find((i) => i.kind === 'file' && i.type.startsWith('image/'));
      if (!item) return;
      e.preventDefault();
      this.inspect(item.getAsFile());
    });
    // Intermediate snapshots age out on the server: fetch the list afresh before the person moves the slider.
    this.slider.addEventListener('pointerdown', () => this.refreshSnapshots());
    this.slider.addEventListener('focus', () => this.refreshSnapshots());
    this.slider.addEventListener('input', () => this.showSliderText());
    this.slider.addEventListener('change', () => {
      this.followLatest = Number(this.slider.value) === this.snapshots.length - 1;
      if (this.file) this.inspect(this.file);
    });
    this.useProbe.addEventListener('click', () => this.makeProbe());
    new ResizeObserver(() => this.answer && requestDraw(this)).observe(container);
    this.reset();
  }

  reset() {
    this.file = null;
    this.answer = null;
    this.snapshots = [];
    this.followLatest = true;
    this.result.hidden = true;
    this.placeholder.hidden = false;
    this.layers.reset();
    this.bars.reset();
    this.showError('');
    this.slider.disabled = true;
    this.slider.max = '0';
    this.sliderText.textContent = 'latest';
    this.runId = null;
  }

  /** Refresh the snapshot list when the run changes or an epoch ends. */
  update(state) {
    if (state.runId !== this.runId) {
      this.reset();
      this.runId = state.runId;
    }
    this.useProbe.hidden = !state.canControl; // the live probe belongs to whoever controls the run
    const epochs = state.history.length;
    if (state.runId && state.snapshot && epochs !== this.epochsSeen) {
      this.epochsSeen = epochs;
      this.refreshSnapshots();
    }
  }

  async refreshSnapshots() {
    try {
      const list = await this.session.snapshots();
      const chosen = this.seq(); // read after the await: the slider may have moved meanwhile
      this.snapshots = list;
      this.slider.max = String(Math.max(0, list.length - 1));
      this.slider.disabled = list.length < 2;
      if (this.followLatest || chosen === null) {
        this.slider.value = this.slider.max;
      } else {
        // Stay on the chosen snapshot, or the newest kept one before it if it has aged out.
        const at = list.findLastIndex((s) => s.seq <= chosen);
        this.slider.value = String(Math.max(0, at));
      }
      this.showSliderText();
    } catch {
      // The list is a convenience: without it the latest snapshot is used.
    }
  }

  /** The snapshot the slider points at, or null for the latest. */
  seq() {
    if (this.followLatest || !this.snapshots.length) return null;
    return this.snapshots[Number(this.slider.value)]?.seq ?? null;
  }

  showSliderText() {
    const s = this.snapshots[Number(this.slider.value)];
    const latest = Number(this.slider.value) === this.snapshots.length - 1;
    this.sliderText.textContent = s
      ? `#${s.seq} · step ${s.step} · ${s.epoch_end ? `end of epoch ${s.epoch}` : `epoch ${s.epoch + 1}`}${latest ? ' (latest)' : ''}`
      : 'latest';
  }

  async inspect(file) {
    this.file = file;
    if (!this.store.runId) {
      this.showError('Start a run (or open one) first: the image is run through its model.');
      return;
    }
    if (this.followLatest) await this.refreshSnapshots();
    try {
      const answer = await this.session.inspect(file, this.seq());
      this.answer = decodeBase64Arrays(answer);
      this.showError('');
      requestDraw(this);
    } catch (err) {
      this.showError(err.message);
      if (err.status === 404) this.refreshSnapshots(); // that snapshot has aged out: offer the kept ones
    }
  }

  async makeProbe() {
    if (!this.file) return;
    try {
      await this.session.uploadProbe(this.file);
      this.showError('');
      this.store.notice('The uploaded image is now the live probe.', 'info');
    } catch (err) {
      this.showError(err.message);
    }
  }

  draw() {
    const a = this.answer;
    if (!a) return;
    this.result.hidden = false;
    this.placeholder.hidden = true;
    this.input.src = `data:image/png;base64,${a.input.png}`;
    const [c, h, w] = a.input.shape;
    const orig = a.input.original_size ? `from ${a.input.original_size.join('×')}` : '';
    this.inputCaption.textContent = `as the model sees it: ${w}×${h}${c === 3 ? ' RGB' : ''} ${orig}${a.input.inverted ? ', inverted' : ''}`;
    const p = a.prediction;
    const conf = p.probabilities[p.index];
    this.prediction.textContent = `prediction: ${p.name} (${(100 * conf).toFixed(0)}%) · snapshot #${a.snapshot.seq}, step ${a.snapshot.step}`;
    this.bars.update(p.probabilities, a.classes);
    this.layers.draw(a.layers.map((l) => ({ name: l.name, fmap: l })));
  }

  showError(message) {
    this.error.textContent = message;
    this.error.hidden = !message;
  }
}
