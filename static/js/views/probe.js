/** The probe: the test image whose feature maps are shown, the model's guess for it, and a chooser. */

import { api } from '../api.js';
import { fmt } from '../colormap.js';
import { setHidden, setProp, setText } from '../dom.js';
import { requestDraw } from '../frame.js';
import { ProbBars } from '../probbars.js';

const THUMB = 34; // CSS px a thumbnail takes in the chooser, border and gap included

export class ProbeView {
  constructor(container, { store, session }) {
    this.store = store;
    this.session = session;
    this.canvas = container.querySelector('[data-role=probe-image]');
    this.caption = container.querySelector('[data-role=caption]');
    this.loss = container.querySelector('[data-role=probe-loss]');
    this.bars = new ProbBars(container.querySelector('[data-role=probs]'));
    this.strip = container.querySelector('[data-role=thumbs]');
    this.prev = container.querySelector('[data-role=prev]');
    this.next = container.querySelector('[data-role=next]');
    this.prev.addEventListener('click', () => this.page(-1));
    this.next.addEventListener('click', () => this.page(1));
    this.ctx = this.canvas.getContext('2d');
    this.first = 0;
    this.dataset = null;
    this.reset();
  }

  reset() {
    this.snapshot = null;
    this.bars.reset();
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    setText(this.caption, 'No probe yet.');
    setHidden(this.loss, true);
  }

  update(state) {
    const ds = state.run ? state.dataset(state.run.config?.dataset) : null;
    if (ds?.name !== this.dataset?.name) {
      this.dataset = ds;
      this.first = 0;
      this.renderThumbs();
    }
    this.classes = state.run?.classes ?? ds?.classes ?? [];
    if (state.snapshot !== this.snapshot) {
      this.snapshot = state.snapshot;
      this.drawsSnapshot = true;
      if (this.snapshot) requestDraw(this);
    }
  }

  draw() {
    this.drawsSnapshot = false;
    const probe = this.snapshot?.probe;
    if (!probe) return;
    const px = probe.pixels;
    const [c, h, w] = px.shape.length === 3 ? px.shape : [1, ...px.shape];
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
      this.image = null;
    }
    this.image ??= new ImageData(w, h);
    const out = this.image.data;
    const q = px.q;
    const plane = h * w;
    for (let i = 0; i < plane; i++) {
      const r = q[i];
      out[4 * i] = r;
      out[4 * i + 1] = c === 3 ? q[i + plane] : r;
      out[4 * i + 2] = c === 3 ? q[i + 2 * plane] : r;
      out[4 * i + 3] = 255;
    }
    this.ctx.putImageData(this.image, 0, 0);
    const label = probe.label ?? null;
    const where = probe.source === 'upload' ? 'uploaded image'
      : probe.source === 'watch' ? "the script's probe image" : `test image #${probe.index}`;
    const truth = label === null ? '' : ` · true class: ${this.classes[label] ?? label}`;
    setText(this.caption, `${where}${truth}`);
    if (probe.probs) this.bars.update(probe.probs, this.classes, label);
    // Cross-entropy of this one image: what the training loss averages over a batch.
    const p = label !== null && probe.probs ? probe.probs[label] : null;
    setHidden(this.loss, p === null || p === undefined);
    if (!this.loss.hidden) {
      const loss = -Math.log(Math.max(p, 1e-12));
      setText(this.loss, `loss on this image: −log p(${this.classes[label] ?? label}) = −log ${fmt(p)} = ${fmt(loss)}`);
    }
    this.markCurrent(probe.source === 'upload' ? -1 : probe.index);
  }

  /** As many thumbnails as fit the strip. */
  get pageSize() { return Math.max(4, Math.floor((this.strip.clientWidth + 4) / THUMB)); }

  page(delta) {
    const count = this.dataset?.test_count ?? 0;
    this.first = Math.max(0, Math.min(Math.max(0, count - this.pageSize), this.first + delta * this.pageSize));
    this.renderThumbs();
  }

  renderThumbs() {
    this.strip.replaceChildren();
    const ds = this.dataset;
    const PAGE = this.pageSize;
    setProp(this.prev, 'disabled', !ds || this.first === 0);
    setProp(this.next, 'disabled', !ds || this.first + PAGE >= ds.test_count);
    if (!ds) return;
    for (let i = this.first; i < Math.min(ds.test_count, this.first + PAGE); i++) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'thumb';
      b.dataset.index = String(i);
      b.dataset.testid = `thumb-${i}`;
      b.title = `Use test image #${i} as the probe`;
      const img = document.createElement('img');
      img.src = api.testImageUrl(ds.name, i);
      img.alt = `test image ${i}`;
      img.className = 'pixelated';
      b.append(img);
      b.addEventListener('click', () => this.choose(i));
      this.strip.append(b);
    }
    this.markCurrent(this.snapshot?.probe?.index ?? -1);
    this.nameThumbs(ds);
  }

  /** Each thumbnail's class, under it and in its title: what the image shows, in the data set's own words. */
  async nameThumbs(ds) {
    if (ds.name.startsWith('run:')) return; // a watched run's own images: their labels are the script's
    if (this.labels?.name !== ds.name) {
      try {
        this.labels = { name: ds.name, ...await api.labels(ds.name) };
      } catch {
        return; // the strip works without names
      }
    }
    if (this.dataset?.name !== ds.name) return;
    const { classes, test } = this.labels;
    for (const b of this.strip.children) {
      const i = Number(b.dataset.index);
      const name = classes[test[i]] ?? '';
      setProp(b, 'title', `Use test image #${i} (${name}) as the probe`);
      const label = document.createElement('span');
      label.className = 'thumb-label';
      label.textContent = name;
      b.append(label);
    }
  }

  async choose(i) {
    if (!this.store.runId) return;
    if (!this.store.canControl) {
      this.store.notice('Only the browser that started this run can change its probe; try your own image below instead.', 'info');
      return;
    }
    try {
      await this.session.setProbe(i);
    } catch (err) {
      this.store.notice(err.message);
    }
  }

  markCurrent(index) {
    for (const b of this.strip.children) b.setAttribute('aria-pressed', String(Number(b.dataset.index) === index));
  }
}
