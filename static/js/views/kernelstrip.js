/**
 * In the kernel inspector, the filmstrip: one input channel's kernel at every snapshot, side by side on one
 * scale, drawn at native size (scaled by ZOOM, pixelated) with one putImageData; the moment shown is outlined,
 * and a click on a frame takes the whole page to that moment.
 */

import { diverging, divIndex } from '../colormap.js';

const ZOOM = 4; // canvas px per kernel entry: a 5×5 kernel is a 20 px frame, large enough to read its pattern
const GAP = 2; // canvas px between frames
const OUTLINE = '#7c3aed'; // the moment shown, as on the charts

export class KernelStripView {
  /** onSeek(seq): a frame was clicked. */
  constructor(canvas, { onSeek }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    canvas.addEventListener('click', (e) => {
      const ref = this.refs[Math.floor(e.offsetX / this.frameWidth)];
      if (ref) onSeek(ref.seq);
    });
    this.reset();
  }

  reset() {
    this.refs = [];
    this.frameWidth = 1;
    this.canvas.hidden = true;
  }

  /** data: {layer, snapshot, channel, history}; history: the filter's frame over the run, or null. */
  update({ layer, snapshot, channel, history }) {
    const [, inCh, kh, kw] = layer.weight.shape;
    const ready = history?.weight && history.weight.shape[1] === inCh;
    this.canvas.hidden = !ready;
    if (!ready) return;
    const refs = history.snapshots;
    const w = history.weight.values(); // (snapshots, in, kh, kw)
    const per = inCh * kh * kw;
    const at = (s) => s * per + channel * kh * kw;
    const tw = kw * ZOOM + GAP;
    const { canvas, ctx } = this;
    canvas.width = refs.length * tw;
    canvas.height = kh * ZOOM + 4;
    let range = 0;
    for (let s = 0; s < refs.length; s++) {
      for (let i = 0; i < kh * kw; i++) range = Math.max(range, Math.abs(w[at(s) + i]));
    }
    const img = ctx.createImageData(canvas.width, canvas.height);
    const px = new Uint32Array(img.data.buffer);
    for (let s = 0; s < refs.length; s++) {
      for (let y = 0; y < kh * ZOOM; y++) {
        for (let x = 0; x < kw * ZOOM; x++) {
          const v = w[at(s) + Math.floor(y / ZOOM) * kw + Math.floor(x / ZOOM)];
          px[(y + 2) * canvas.width + s * tw + x] = diverging.lut[divIndex(range ? v / range : 0)];
        }
      }
    }
    ctx.putImageData(img, 0, 0);
    const shown = refs.findIndex((r) => r.seq === snapshot.seq);
    if (shown >= 0) {
      ctx.strokeStyle = OUTLINE;
      ctx.lineWidth = 2;
      ctx.strokeRect(shown * tw - 1, 1, kw * ZOOM + 2, kh * ZOOM + 2);
    }
    canvas.style.width = `${canvas.width}px`;
    this.refs = refs;
    this.frameWidth = tw;
  }
}
