/**
 * A grid of small images (filters, feature maps) drawn into ONE canvas at native size with one
 * putImageData, scaled up by an integer CSS zoom with `image-rendering: pixelated`.
 *
 * Canvas pixels cannot take the keyboard: with a `label` option, an invisible button lies over each tile (the
 * mouse goes through them to the canvas), one of them in the tab order at a time (a roving tabindex): arrow keys,
 * Home and End move between tiles, Enter or Space picks one, and each is named for screen readers.
 */

export class TileGrid {
  /**
   * opts: maxZoom (largest CSS zoom), maxHeight (CSS px the grid may take), gap (native px between
   * tiles), background (packed RGBA of the gaps), onHover(index, local) / onSelect(index, local);
   * label(index) names tile `index` and makes the tiles focusable, onActivate(index) is what Enter or Space does
   * (onSelect without it), name is the whole grid's accessible name.
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
    if (this.opts.label) this.makeKeys();
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
    // The largest zoom whose grid fits the width and maxHeight; below minZoom the grid grows taller. The rows
    // are then filled evenly (8 tiles in 4 + 4, not 7 + 1 beside an empty block).
    const fits = (z) => Math.max(1, Math.min(count, Math.floor((width / z + gap) / (tileW + gap))));
    const colsAt = (z) => Math.ceil(count / Math.ceil(count / fits(z)));
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
    this.placeKeys();
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

  /** Outline tile i (or none with -1); a picked tile is the one the keyboard comes back to. */
  select(i) {
    if (i === this.selected) return;
    this.selected = i;
    this.placeOutline();
    if (i >= 0) this.rove(i);
  }

  // ---- the keyboard ------------------------------------------------------------------------------------------

  makeKeys() {
    this.keys = document.createElement('div');
    this.keys.className = 'tile-keys';
    this.keys.setAttribute('role', 'group');
    if (this.opts.name) this.keys.setAttribute('aria-label', this.opts.name);
    this.current = 0; // the tile in the tab order
    this.keys.addEventListener('keydown', (e) => this.onKey(e));
    this.keys.addEventListener('focusin', (e) => this.opts.onHover?.(Number(e.target.dataset.index), null));
    this.keys.addEventListener('focusout', (e) => {
      if (!this.keys.contains(e.relatedTarget)) this.opts.onHover?.(-1, null);
    });
    this.root.append(this.keys);
  }

  /** One button per tile, over it (rebuilt when the count changes, moved when the layout does). */
  placeKeys() {
    if (!this.keys) return;
    const buttons = this.keys.children;
    if (buttons.length !== this.count) {
      this.current = Math.min(this.current, Math.max(0, this.count - 1));
      this.keys.replaceChildren(...Array.from({ length: this.count }, (_, i) => {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'tile-key';
        b.tabIndex = i === this.current ? 0 : -1;
        b.dataset.index = String(i);
        b.dataset.n = `#${i}`;
        b.setAttribute('aria-label', this.opts.label(i));
        return b;
      }));
    }
    const z = this.zoom;
    for (let i = 0; i < this.count; i++) {
      const [x, y] = this.origin(i);
      const css = `left:${x * z}px;top:${y * z}px;width:${this.tileW * z}px;height:${this.tileH * z}px`;
      if (buttons[i].dataset.css !== css) { // moved only when the layout did: no style work at every moment
        buttons[i].dataset.css = css;
        buttons[i].style.cssText = css;
      }
    }
  }

  /** Make tile i the one Tab reaches (and focus it with `focus`). */
  rove(i, focus = false) {
    const buttons = this.keys?.children;
    if (!buttons?.length) return;
    const at = Math.max(0, Math.min(buttons.length - 1, i));
    if (at !== this.current) {
      buttons[this.current]?.setAttribute('tabindex', '-1');
      buttons[at].setAttribute('tabindex', '0');
      this.current = at;
    }
    if (focus) buttons[at].focus();
  }

  /** Focus the tile the keyboard is on (the picked one, after the inspector closes). */
  focus() { this.rove(this.current, true); }

  onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: this.cols, ArrowUp: -this.cols };
    const i = this.current;
    let to = null;
    if (e.key in moves) to = i + moves[e.key];
    else if (e.key === 'Home') to = 0;
    else if (e.key === 'End') to = this.count - 1;
    else if (e.key === 'Enter' || e.key === ' ') {
      (this.opts.onActivate ?? this.opts.onSelect)?.(i, null);
    } else return;
    e.preventDefault();
    e.stopPropagation(); // the page's own keys (the timeline's arrows, space to pause) stay out of the grid
    if (to !== null && to >= 0 && to < this.count) this.rove(to, true);
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
