/** The feature-map panel: per conv layer, what each filter makes of the probe image. */

import { setText } from '../dom.js';
import { requestDraw } from '../frame.js';
import { FeatureMapLayers } from '../fmapgrid.js';

export class FeatureMapsView {
  constructor(container, { store }) {
    this.store = store;
    this.list = container.querySelector('[data-role=layers]');
    this.perMap = container.querySelector('[data-role=per-map]');
    this.info = container.querySelector('[data-role=info]');
    this.perMap.addEventListener('change', () => requestDraw(this));
    this.layers = new FeatureMapLayers(this.list, {
      maxHeight: 260, maxZoom: 6, minZoom: 2, stages: true,
      onHover: (li, i) => this.onHover(li, i),
      onSelect: (li, i) => {
        const sel = store.view.selected;
        const same = sel && sel.layer === li && sel.index === i;
        store.setView({ selected: same ? null : { layer: li, index: i } });
      },
    });
    this.width = 0;
    new ResizeObserver((entries) => {
      this.width = entries[0].contentRect.width;
      if (this.snapshot) requestDraw(this);
    }).observe(this.list);
    this.reset();
  }

  reset() {
    this.snapshot = null;
    this.layers.reset();
    this.list.innerHTML = '<p class="empty">Feature maps appear with the first snapshot.</p>';
    setText(this.info, '');
  }

  update(state) {
    if (state.snapshot !== this.snapshot) this.drawsSnapshot = true;
    this.snapshot = state.snapshot;
    this.selected = state.view.selected;
    if (this.snapshot) requestDraw(this);
  }

  draw() {
    this.drawsSnapshot = false;
    if (!this.snapshot) return;
    if (!this.layers.layers.length) this.list.replaceChildren();
    this.layers.draw(this.snapshot.layers, {
      perMap: this.perMap.checked, selected: this.selected, width: this.width,
    });
  }

  onHover(li, i) {
    const layer = this.snapshot?.layers[li];
    const arr = this.layers.shown(li);
    if (!layer || !arr || i < 0) {
      setText(this.info, '');
      return;
    }
    const [, h, w] = arr.shape;
    const v = arr.values().subarray(i * h * w, (i + 1) * h * w);
    let max = -Infinity;
    let sum = 0;
    let negative = 0;
    for (const x of v) {
      max = Math.max(max, x);
      sum += x;
      if (x < 0) negative++;
    }
    const removed = layer.preact && this.layers.layers[li]?.stage === 'before'
      ? ` · ${Math.round((100 * negative) / v.length)}% negative: ReLU zeroes them` : '';
    this.info.textContent = `${layer.name} map #${i} (${h}×${w}): mean ${(sum / v.length).toPrecision(3)}, `
      + `max ${max.toPrecision(3)}${max <= 0 ? ' (silent on this image)' : ''}${removed} · click to open its filter`;
  }
}
