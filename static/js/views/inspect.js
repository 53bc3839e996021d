/** Upload panel: run a dropped, picked, pasted or drawn image through the model at the timeline's moment. */

import { decodeBase64Arrays } from '../codec.js';
import { DrawPad } from '../drawpad.js';
import { FeatureMapLayers } from '../fmapgrid.js';
import { requestDraw } from '../frame.js';
import { ProbBars } from '../probbars.js';

// Below this top probability the model is said to be unsure: with ten classes, 0.5 is five times chance.
const UNSURE = 0.5;

/** What the model can answer, in words: it knows only its classes, whatever the picture shows; `loud` when it
 * is unsure or the picture has colour a grey model cannot see (and the text says so). */
export function knows(answer, dataset) {
  const classes = answer.classes;
  const named = classes.length <= 12 ? `: ${classes.join(', ')}` : ` (${classes.slice(0, 8).join(', ')}, …)`;
  const set = dataset?.title ?? dataset?.name;
  let text = `This model knows only the ${classes.length} classes it was trained on${set ? ` in ${set}` : ''}${named}. `
    + 'It answers with one of them, whatever the picture shows.';
  const conf = answer.prediction.probabilities[answer.prediction.index];
  if (answer.input.colour) {
    text += ` Your picture is in colour; the model was trained on grey images and sees only its brightness.`;
  }
  if (conf < UNSURE) {
    text += ` It is unsure here (${(100 * conf).toFixed(0)} % at most): the picture may show none of them.`;
  }
  return { text, loud: conf < UNSURE || answer.input.colour };
}

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
    this.knows = $('knows');
    this.momentText = $('snapshot-text');
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
    this.useProbe.addEventListener('click', () => this.makeProbe());
    new ResizeObserver(() => this.answer && requestDraw(this)).observe(container);
    this.reset();
  }

  reset() {
    this.file = null;
    this.answer = null;
    this.result.hidden = true;
    this.placeholder.hidden = false;
    this.layers.reset();
    this.bars.reset();
    this.showError('');
    this.momentText.textContent = 'At the moment the timeline shows.';
    this.runId = null;
    this.shownSeq = null;
    clearTimeout(this.again);
  }

  /** The run or the moment changed: a new run starts afresh; a new moment runs the image again. */
  update(state) {
    if (state.runId !== this.runId) {
      this.reset();
      this.runId = state.runId;
    }
    this.useProbe.hidden = !state.canControl; // the live probe belongs to whoever controls the run
    const seq = this.seq();
    const ended = seq === null && state.isFinal;
    if (seq !== this.shownSeq || ended !== this.shownEnded) {
      this.shownEnded = ended;
      const snap = state.snapshot;
      this.momentText.textContent = seq === null
        ? (ended ? 'At the run\'s last moment.' : 'At the newest moment (the timeline is live).')
        : `At the moment the timeline shows: step ${snap?.step ?? '?'}.`;
    }
    if (seq !== this.shownSeq) {
      this.shownSeq = seq;
      clearTimeout(this.again);
      // Not at every frame of a replay: once the timeline rests for a moment.
      if (this.file && !state.playing) this.again = setTimeout(() => this.inspect(this.file), 250);
    }
  }

  /** The snapshot the timeline shows, or null for the newest. */
  seq() {
    const { store } = this;
    return store.cursor !== null ? store.snapshot?.seq ?? store.cursor : null;
  }

  async inspect(file) {
    this.file = file;
    if (!this.store.runId) {
      this.showError('Start a run (or open one) first: the image is run through its model.');
      return;
    }
    if (this.store.run?.capabilities?.inspectable === false) {
      this.showError('This run is a person\'s own model, recorded by their script (filterscope.watch): the server '
        + 'has neither its code nor its weights at each moment, so an image cannot be run through it here.');
      return;
    }
    // One image in flight per page (the server takes one at a time from a viewer's address and refuses more
    // with 429): an image given meanwhile waits, and only the latest of those is sent once the answer is in.
    if (this.inFlight) {
      this.waiting = file;
      return;
    }
    this.inFlight = true;
    try {
      const answer = await this.session.inspect(file, this.seq());
      this.answer = decodeBase64Arrays(answer);
      this.showError('');
      requestDraw(this);
    } catch (err) {
      this.showError(err.message);
    } finally {
      this.inFlight = false;
      const next = this.waiting;
      this.waiting = null;
      if (next) this.inspect(next);
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
    this.prediction.textContent = `prediction: ${p.name} (${(100 * conf).toFixed(0)}%) · the model at step ${a.snapshot.step}`; // as the timeline names the moment
    this.bars.update(p.probabilities, a.classes);
    const said = knows(a, this.store.dataset(this.store.run?.config?.dataset));
    this.knows.textContent = said.text;
    this.knows.classList.toggle('unsure', said.loud);
    this.layers.draw(a.layers.map((l) => ({ name: l.name, fmap: l })));
  }

  showError(message) {
    this.error.textContent = message;
    this.error.hidden = !message;
  }
}
