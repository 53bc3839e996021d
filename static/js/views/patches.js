/**
 * In the kernel inspector, what the selected filter detects: its 9 top test-set patches, large, at the
 * timeline's moment (the latest analysis at or before it). For the run's owner, while the run trains or is
 * paused, each patch is a button that makes its test image the probe, so its feature maps show where else the
 * filter fires; others (and everyone, once the run has ended) see the patches.
 */

import { fmt } from '../colormap.js';
import { setHidden, setText } from '../dom.js';
import { requestDraw } from '../frame.js';
import { cellSize, paintCrop } from '../mosaic.js';

const PATCH_PX = 84; // CSS size of one patch: an 18 px field at more than 4x, a 5 px one at 16x

export class PatchesView {
  constructor(container, { store, session }) {
    this.store = store;
    this.session = session;
    this.root = container;
    this.caption = container.querySelector('[data-role=caption]');
    this.list = container.querySelector('[data-role=list]');
    this.reset();
  }

  reset() {
    setHidden(this.root, true);
    this.key = null;
    this.list.replaceChildren();
  }

  update() { requestDraw(this); }

  draw() {
    const s = this.store;
    const sel = s.view.selected;
    const snap = s.snapshot;
    const layer = sel && snap?.layers[sel.layer];
    setHidden(this.root, !layer);
    if (!layer) return;
    const seq = s.analysisAt(snap.seq);
    const top = s.top(seq, layer.name);
    const test = s.testPixels;
    if (!top || !test || test.dataset !== s.run?.config?.dataset) {
      this.key = null;
      this.list.replaceChildren();
      this.caption.textContent = seq === null ? 'No analysis yet: one is made at step 0 and after every epoch.'
        : 'Loading what it detects…';
      return;
    }
    const owner = s.canControl && !s.isFinal; // an ended run's probe no longer changes (409)
    const key = `${s.runId}:${seq}:${layer.name}:${sel.index}:${owner}`;
    if (key === this.key) return; // the same patches: nothing to redraw
    this.key = key;
    const f = top.filters[sel.index];
    setText(this.caption, this.describe(f, top, owner));
    this.list.replaceChildren(...f.patches.map((p, k) => this.patch(p, k, top.receptive_field, test, owner)));
  }

  describe(f, top, owner) {
    const health = f.dead ? ' It is dead: no positive response anywhere on the test set.'
      : f.duplicate_of !== null ? ` A near-duplicate of #${f.duplicate_of} (cosine ${f.similarity.toFixed(3)}).` : '';
    const why = this.store.canControl ? 'the probe changes only while the run trains or is paused'
      : 'only the browser that started this run can make one the probe';
    const click = f.patches.length ? (owner ? ' Click one to make its image the probe.' : ` (${why[0].toUpperCase()}${why.slice(1)}.)`) : '';
    if (!f.patches.length) return `At step ${top.step} it responds to no test image.${health}`;
    return `The ${f.patches.length} test images it responds to most at step ${top.step}, each cut to the `
      + `${top.receptive_field}×${top.receptive_field} px its strongest response sees (bright; dimmed around it); above zero at `
      + `${(100 * f.positive).toFixed(1)} % of positions.${health}${click}`;
  }

  patch(p, k, rf, test, owner) {
    const item = document.createElement(owner ? 'button' : 'figure');
    item.className = 'patch';
    item.dataset.testid = `patch-${k}`;
    item.dataset.index = String(p.index);
    const canvas = document.createElement('canvas');
    canvas.className = 'pixelated';
    const cell = cellSize(rf);
    canvas.width = cell;
    canvas.height = cell;
    canvas.style.width = canvas.style.height = `${PATCH_PX}px`;
    const image = new ImageData(cell, cell);
    paintCrop(new Uint32Array(image.data.buffer), cell, 0, 0, rf, test, p.index, p.box);
    canvas.getContext('2d').putImageData(image, 0, 0);
    const label = document.createElement('span');
    label.textContent = `#${p.index} · ${fmt(p.activation)}`;
    item.append(canvas, label);
    item.title = `test image #${p.index}, rows ${p.box[0]}-${p.box[2] - 1}, columns ${p.box[1]}-${p.box[3] - 1}: `
      + `response ${p.activation}`;
    if (owner) {
      item.type = 'button';
      item.addEventListener('click', () => this.session.setProbe(p.index).catch((err) => this.store.notice(err.message)));
    }
    return item;
  }
}
