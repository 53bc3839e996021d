/**
 * A grid of small images (filters, feature maps) drawn into ONE canvas at native size with one
 * putImageData, scaled up by an integer CSS zoom with `image-rendering: pixelated`.
 */

export class TileGrid {
  /**
   * opts: maxZoom (largest CSS zoom), maxHeight (CSS px the grid may take), gap (native px between
   * tiles), background (packed RGBA of the gaps), onHover(index, local) / onSelect(index, local).
   */
  constructor(container, opts = {}) {
    this.opts = { maxZoom: 8, minZoom: 1, maxHeight: 320, gap: 1, background: 0xff473f3a, ...opts };
    this.root = document.createElement('div');
    this.root.className = 'tilegrid';
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'pixelated';
    this.outline = document.createElement('div');
    this.outline.className = 'tile-outline';
    this.outline.hidden = true;
    this.root.append(this.canvas, this.outline);
    container.append(this.root);
    this.ctx = this.canvas.getContext('2d');
    this.count = 0;
    this.tileW = 0;
    this.tileH = 0;
    this.image = null;
    this.pixels = null;
    this.selected = -1;
    this.availableWidth = container.clientWidth || 400;
    this.canvas.addEventListener('mousemove', (e) => this.opts.onHover?.(...this.hit(e)));
    this.canvas.addEventListener('mouseleave', () => this.opts.onHover?.(-1, null));
    this.canvas.addEventListener('click', (e) => {
      const [i, local] = this.hit(e);
      if (i >= 0) this.opts.onSelect?.(i, local);
    });
  }

  /** Lay out `count` tiles of tileW x tileH native pixels in `width` CSS px; true if the size changed. */
  configure(count, tileW, tileH, width = this.availableWidth) {
    this.availableWidth = width;
    const { gap, maxZoom, minZoom, maxHeight } = this.opts;
    // The largest zoom whose grid fits the width and maxHeight; below minZoom the grid grows taller.
    const colsAt = (z) => Math.max(1, Math.min(count, Math.floor((width / z + gap) / (tileW + gap))));
    let zoom = minZoom;
    for (let z = maxZoom; z > minZoom; z--) {
      const rows = Math.ceil(count / colsAt(z));
      if (tileW * z <= width && rows * (tileH + gap) * z - gap * z <= maxHeight) {
        zoom = z;
        break;
      }
    }
    const cols = colsAt(zoom);
    const rows = Math.ceil(count / cols);
    const w = cols * (tileW + gap) - gap;
    const h = rows * (tileH + gap) - gap;
    const same = this.image && this.image.width === w && this.image.height === h
      && this.zoom === zoom && this.count === count && this.tileW === tileW && this.tileH === tileH;
    Object.assign(this, { count, tileW, tileH, cols, rows, zoom });
    if (same) return false;
    this.canvas.width = w;
    this.canvas.height = h;
    this.canvas.style.width = `${w * zoom}px`;
    this.canvas.style.height = `${h * zoom}px`;
    this.image = new ImageData(w, h);
    this.pixels = new Uint32Array(this.image.data.buffer);
    this.clear();
    this.placeOutline();
    return true;
  }

  /** Fill everything (gaps included) with the background colour. */
  clear() { this.pixels.fill(this.opts.background); }

  /** Native-pixel origin of tile i. */
  origin(i) {
    const { gap } = this.opts;
    return [(i % this.cols) * (this.tileW + gap), Math.floor(i / this.cols) * (this.tileH + gap)];
  }

  /** Push the pixels to the canvas: the one putImageData per grid per frame. */
  commit() { this.ctx.putImageData(this.image, 0, 0); }

  /** Tile index under a mouse event and the position inside it, or -1. */
  hit(e) {
    if (!this.image) return [-1, null];
    const { gap } = this.opts;
    const x = Math.floor(e.offsetX / this.zoom);
    const y = Math.floor(e.offsetY / this.zoom);
    const col = Math.floor(x / (this.tileW + gap));
    const row = Math.floor(y / (this.tileH + gap));
    const lx = x - col * (this.tileW + gap);
    const ly = y - row * (this.tileH + gap);
    const i = row * this.cols + col;
    if (col >= this.cols || lx >= this.tileW || ly >= this.tileH || i >= this.count) return [-1, null];
    return [i, { x: lx, y: ly }];
  }

  /** Outline tile i (or none with -1). */
  select(i) {
    this.selected = i;
    this.placeOutline();
  }

  placeOutline() {
    const i = this.selected;
    this.outline.hidden = !(i >= 0 && i < this.count);
    if (this.outline.hidden) return;
    const [x, y] = this.origin(i);
    const z = this.zoom;
    Object.assign(this.outline.style, {
      left: `${x * z - 2}px`, top: `${y * z - 2}px`,
      width: `${this.tileW * z + 4}px`, height: `${this.tileH * z + 4}px`,
    });
  }
}
