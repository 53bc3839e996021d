/**
 * In the kernel inspector, one input channel's kernel as numbers: W, dW and ΔW as kh × kw tables, each cell
 * coloured on its table's own ±max. The tables are built once per kernel shape and then only rewritten in place,
 * so a timeline scrubbed at 30 frames a second changes text and colours, not the DOM's shape; one listener on
 * the box answers a click on any cell (the entry picked, followed by the charts below).
 */

import { diverging, divIndex } from '../colormap.js';
import { stats } from '../kernels.js';

const KINDS = [['weight', 'W'], ['grad', 'dW'], ['update', 'ΔW']];
const LIGHT_TEXT = 0.6; // past this share of the table's ±max the cell is dark enough for white text

/** A kernel entry in at most 3 significant digits (exponent form when tiny or huge); '–' when not finite. */
export const num = (x) => (Number.isFinite(x) ? (x === 0 ? '0' : Math.abs(x) < 1e-3 || Math.abs(x) >= 1e4
  ? x.toExponential(2) : x.toPrecision(3)) : '–');

const css = (value, range) => {
  const [r, g, b] = diverging.css[divIndex(range ? value / range : 0)];
  return `rgb(${r}, ${g}, ${b})`;
};

export class KernelGridView {
  /** onPick(entry): a cell was clicked; entry is its flat index in the kernel (row × kw + column). */
  constructor(container, { onPick }) {
    this.root = container;
    container.addEventListener('click', (e) => {
      const cell = e.target.closest('td[data-entry]');
      if (cell && container.contains(cell)) onPick(Number(cell.dataset.entry));
    });
    this.reset();
  }

  reset() {
    this.shape = null;
    this.tables = []; // [{kind, cells: [td, ...]}] in KINDS order
    this.root.replaceChildren();
  }

  /** The three tables for a kh × kw kernel, each cell holding one text node to rewrite. */
  build(kh, kw) {
    this.shape = `${kh}x${kw}`;
    this.tables = KINDS.map(([kind, label]) => {
      const figure = document.createElement('figure');
      figure.className = 'numbers';
      const cap = document.createElement('figcaption');
      cap.textContent = label;
      const table = document.createElement('table');
      table.dataset.testid = `kernel-numbers-${kind}`;
      const cells = [];
      for (let y = 0; y < kh; y++) {
        const row = table.insertRow();
        for (let x = 0; x < kw; x++) {
          const cell = row.insertCell();
          cell.dataset.entry = String(y * kw + x);
          cell.append(document.createTextNode(''));
          cells.push(cell);
        }
      }
      figure.append(cap, table);
      this.root.append(figure);
      return { kind, cells };
    });
  }

  /** data: {layer, filter, channel, entry} — the layer's arrays at the moment shown. */
  update({ layer, filter, channel, entry }) {
    const [, inCh, kh, kw] = layer.weight.shape;
    if (this.shape !== `${kh}x${kw}`) this.build(kh, kw);
    const start = filter * inCh * kh * kw + channel * kh * kw;
    for (const { kind, cells } of this.tables) {
      const values = layer[kind]?.values().subarray(start, start + kh * kw);
      const s = values ? stats(values, 0, values.length) : { min: 0, max: 0 };
      const range = Math.max(Math.abs(s.min), Math.abs(s.max));
      cells.forEach((cell, i) => {
        const v = values ? values[i] : NaN;
        cell.firstChild.data = num(v);
        cell.dataset.value = String(v);
        cell.style.background = css(v, range);
        cell.style.color = range && Math.abs(v / range) > LIGHT_TEXT ? '#fff' : '#111';
        cell.title = `row ${Math.floor(i / kw)}, column ${i % kw}: ${v}`;
        cell.classList.toggle('picked', i === entry);
      });
    }
  }
}
