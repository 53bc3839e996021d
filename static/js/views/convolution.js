/**
 * In the kernel inspector, "the convolution, worked": for the probe at the moment shown, one pixel of the
 * filter's feature map computed forward (the input patch under the kernel, their products, the sum plus the
 * bias = the pre-activation, the activation, and which pixel the pooling keeps), the map's size worked from the
 * input's, and backward how the kernel is trained (δ = dL/dz over the map, dL/dW[i, j] = Σ I(y+i, x+j)·δ(y, x)
 * as a picture and numbers, beside the batch's dW it is one term of). The numbers come from the server, which
 * rebuilds the model of that moment and runs the probe through its real modules (GET …/convolution/…). Rows,
 * columns, channels and filters are counted from 0, as PyTorch's indices are.
 */

import { diverging, divIndex, grey, seqIndex } from '../colormap.js';
import { num } from './kernelgrid.js';
import { sig } from './kernelupdate.js';
import { workedPath, WorkedSource } from './workedsource.js';

const minus = (s) => s.replace(/^-/, '−');
const show = (x) => minus(sig(x));
const cssColor = (value, range) => {
  const [r, g, b] = diverging.css[divIndex(range ? value / range : 0)];
  return `rgb(${r}, ${g}, ${b})`;
};
const maxAbs = (rows) => rows.reduce((m, row) => row.reduce((n, v) => Math.max(n, Math.abs(v)), m), 0);

export class ConvolutionView {
  /** onPick({y, x}): a pixel of the map was clicked; onArrive(): worked numbers came, redraw. */
  constructor(container, { onPick, onArrive = () => {} }) {
    this.root = container;
    this.onPick = onPick;
    this.source = new WorkedSource(onArrive);
    this.reset();
  }

  reset() {
    this.root.replaceChildren();
    this.shownKey = null;
    this.forwardKey = null;
    this.source.reset();
  }

  /** data: {layer, snapshot, filter, channel, entry, pixel, run, runId} — pixel {y, x} or null (the map's max). */
  update(data) {
    const { layer, snapshot: snap, filter, pixel, runId } = data;
    if (!runId) return;
    const path = workedPath('convolution', runId, snap.seq, layer.name, filter, pixel);
    let answer = this.source.get(path, { earlier: true });
    // While this moment is worked out, the newest one before it stays (a live run's moments come faster than a
    // busy server answers), said to be of its step, and without the snapshot's own numbers beside it.
    if (answer?.earlier && answer.body.snapshot.seq > snap.seq) answer = null;
    const earlier = answer?.earlier ? answer.body.snapshot.step : null;
    const forwardKey = `${path}:${data.channel}:${answer ? `a${earlier}` : '-'}`;
    const key = `${forwardKey}:${data.entry}`;
    if (key === this.shownKey) return;
    this.shownKey = key;
    if (!answer || answer.error) {
      this.forwardKey = null;
      this.root.replaceChildren(para(answer?.error
        ?? `Working out ${layer.name}'s filter #${filter} on the probe at step ${snap.step}…`, 'hint'));
      return;
    }
    // Another kernel entry changes only the backward part: the forward part (the map a person clicks) stays.
    if (forwardKey !== this.forwardKey) {
      this.forwardKey = forwardKey;
      this.forwardPart = document.createElement('div');
      this.backwardPart = document.createElement('div');
      this.forwardPart.append(...this.forward(data, answer.body, earlier));
      this.root.replaceChildren(this.forwardPart, this.backwardPart);
    }
    this.backwardPart.replaceChildren(...this.backward(data, answer.body, earlier));
  }

  /** earlier: null, or the step `a` was worked at when it is not the moment shown (then the snapshot's own
   * numbers, of another step, are left out). */
  forward(data, a, earlier = null) {
    const c = Math.min(data.channel, a.channels.length - 1);
    const px = a.pixel;
    const g = a.geometry;
    const [kh, kw] = g.kernel;
    const [sy, sx] = g.stride;
    const [dy, dx] = g.dilation;
    const [ho, wo] = g.output_size;
    const head = heading(`Forward: pixel (${px.y}, ${px.x}) of the feature map `
      + `(row ${px.y}, column ${px.x}, counted from 0), for the probe`);
    const input = figure(`${a.layer}'s input${a.channels.length > 1 ? `, channel ${a.channels[c]}` : ''}`
      + `${g.padding.some(Boolean) ? ', padded' : ''}: the patch outlined`, picture(a.input[c], 'grey', [
      { y0: px.y * sy, x0: px.x * sx, y1: px.y * sy + (kh - 1) * dy + 1, x1: px.x * sx + (kw - 1) * dx + 1 }]));
    const boxes = [{ y0: px.y, x0: px.x, y1: px.y + 1, x1: px.x + 1 }];
    if (px.window) boxes.push({ y0: px.window[0], x0: px.window[1], y1: px.window[2], x1: px.window[3], cls: 'pool' });
    const map = picture(a.output, 'grey', boxes, (y, x) => this.onPick({ y, x }));
    map.canvas.dataset.testid = 'conv-map';
    const output = figure(`filter #${a.filter}'s map after ${a.activation === 'none' ? 'the conv' : a.activation} `
      + `(${ho}×${wo}): click a pixel`, map);
    const patch = px.patch[c];
    const kernel = a.kernel[c];
    const products = px.products[c];
    const tables = document.createElement('div');
    tables.className = 'conv-tables';
    const range = maxAbs(products);
    tables.append(
      tableFigure(`input patch I(${at('y', sy, 'i', dy)}, ${at('x', sx, 'j', dx)})`, patch, maxAbs(patch), 'conv-patch'),
      sign('×'), tableFigure('kernel F(i, j)', kernel, maxAbs(kernel), 'conv-kernel'), sign('='),
      tableFigure('products I · F', products, range, 'conv-products'));
    const channelSum = products.flat().reduce((s, v) => s + v, 0);
    const multi = a.channels.length > 1
      ? ` over all ${a.channels.length} input channels (this one gives ${show(channelSum)})` : '';
    const frameZ = earlier === null ? frameValue(data.layer.preact, a.filter, px.y, px.x) : null;
    const kept = frameHalfStep(data.layer.preact, a.filter);
    const lines = [
      sentence(`z(${px.y}, ${px.x}) = Σ products${multi} + bias = `, value('conv-sum', px.sum), ' + ',
        a.bias === null ? '0 (no bias)' : value('conv-bias', a.bias), ' = ', value('conv-preact', px.preact),
      frameZ === null ? '' : `; the snapshot holds ${show(frameZ)}, which it keeps to ±${sig(kept)} (1/254 of the `
        + 'map\'s extreme).'),
      sentence(activationLine(a.activation, px)),
      sentence(poolLine(g, px, a.output)),
    ];
    const grid = document.createElement('div');
    grid.className = 'conv-row';
    grid.append(input, output);
    const moment = earlier === null ? para(`At step ${data.snapshot.step}, the moment shown.`, 'hint')
      : para(`At step ${earlier}, the newest moment worked out so far; step ${data.snapshot.step} is being worked `
        + 'out.', 'hint');
    moment.dataset.testid = 'conv-step';
    return [moment, para(sizeLine(g)), head, grid, tables, ...lines];
  }

  backward(data, a, earlier = null) {
    const c = Math.min(data.channel, a.channels.length - 1);
    const g = a.geometry;
    const [kh, kw] = g.kernel;
    const entry = data.entry ?? Math.floor((kh * kw) / 2);
    const i = Math.floor(entry / kw);
    const j = entry % kw;
    const t = a.target;
    const px = a.pixel;
    const head = heading('Backward: how the kernel is trained, for the probe');
    const loss = para(`Loss: cross-entropy against ${t.is_label ? 'the probe\'s true class' : 'the class the model '
      + 'predicts (this probe has no label)'}, “${t.name}”: −log p = −log ${show(t.probability)} = ${show(a.loss)}.`);
    const delta = picture(a.delta, 'diverging', [{ y0: px.y, x0: px.x, y1: px.y + 1, x1: px.x + 1 }],
      (y, x) => this.onPick({ y, x }));
    delta.canvas.dataset.testid = 'conv-delta';
    const gated = a.activation === 'ReLU' ? ': zero wherever the ReLU cut z ≤ 0, since no gradient passes there' : '';
    const deltaFig = figure(`δ = dL/dz over filter #${a.filter}'s map${gated}`, delta);
    const [n, inCh] = [a.geometry.output_size[0] * a.geometry.output_size[1], a.channels.length];
    const [sy, sx] = g.stride;
    const [dy, dx] = g.dilation;
    const tables = document.createElement('div');
    tables.className = 'conv-tables';
    tables.append(tableFigure(`dL/dW for the probe${inCh > 1 ? `, channel ${a.channels[c]}` : ''}`, a.grad[c],
      maxAbs(a.grad[c]), 'conv-grad', entry));
    if (earlier === null) {
      const fromFrame = frameKernel(data.layer.grad, a.filter, c, kh, kw);
      tables.append(tableFigure('the batch\'s dW (the snapshot\'s)', fromFrame, maxAbs(fromFrame), 'conv-batch-grad',
        entry));
    }
    const row = document.createElement('div');
    row.className = 'conv-row';
    row.append(deltaFig, tables);
    const terms = gradTerms(a, c, i, j);
    const shownTerms = terms.top.map((term) => `${show(term.I)} × ${show(term.d)}`).join(' + ');
    const more = terms.count > terms.top.length ? ` + … (the ${terms.top.length} largest of ${terms.count} nonzero terms)`
      : '';
    const batch = data.run?.config?.batch_size;
    const silent = a.delta.every((r) => r.every((v) => v === 0));
    return [head, loss, row,
      sentence(`dL/dW[${a.filter}, ${a.channels[c]}, ${i}, ${j}] = Σ over the ${n} pixels (y, x) of `
        + `I(${at('y', sy, 'i', dy)}, ${at('x', sx, 'j', dx)}) · δ(y, x) = ${terms.count ? `${shownTerms}${more}` : '0 (every term is 0)'} = `,
      value('conv-grad-sum', terms.sum), '; PyTorch\'s autograd gives ', value('conv-autograd', a.autograd[c][i][j]), '.'),
      ...(silent ? [para(`δ is 0 everywhere: ${a.activation === 'ReLU' ? 'no pixel of this map is above 0 for the '
        + 'probe, so the ReLU passes no gradient back and ' : ''}the probe adds nothing to this filter's dW here.`)] : []),
      para(`${earlier === null ? 'The batch\'s dW beside it' : 'The batch\'s dW (shown beside it once the moment '
        + 'shown is worked out)'} is the mean of ${batch ?? 'B'} such terms, one per training image of the `
        + 'batch, taken at W before the step (the probe is a test image, not one of them); the optimizer moves W '
        + 'against that mean. Click an entry of the kernel\'s tables above to follow another.', 'hint')];
  }
}

function sizeLine(g) {
  const [h, w] = g.input_size;
  const [kh, kw] = g.kernel;
  const [pt, pb, pl, pr] = g.padding;
  const [sy] = g.stride;
  const [dy] = g.dilation;
  const [ho, wo] = g.output_size;
  const pads = pt + pb ? ` + ${pt} + ${pb} (padding)` : '';
  const reach = dy > 1 ? `${dy} × (${kh} − 1) + 1` : `${kh}`;
  const simple = sy === 1 ? `${h}${pads} − ${reach} + 1 = ${ho}` : `⌊(${h}${pads} − ${reach}) / ${sy}⌋ + 1 = ${ho}`;
  const square = h === w && kh === kw && pt === pl && pb === pr && ho === wo;
  let text = `Its size: a ${h}×${w} input, a ${kh}×${kw} kernel that fits ${simple} times down`
    + `${square ? ' and across' : ` (${wo} across)`}, so the map is ${ho}×${wo}`;
  if (g.pool && g.pooled_size) {
    const [ph] = g.pool.size;
    const [ps] = g.pool.stride;
    text += `; ${g.pool.kind} pooling ${ph}×${g.pool.size[1]}, stride ${ps}: ⌊(${ho} − ${ph}) / ${ps}⌋ + 1 = `
      + `${g.pooled_size[0]}, so ${g.pooled_size[0]}×${g.pooled_size[1]} go on to the next layer`;
  }
  return `${text}.`;
}

function activationLine(activation, px) {
  if (activation === 'none') return `No activation follows: the map holds z = ${show(px.output)}.`;
  if (activation === 'ReLU') {
    return `ReLU: max(0, z) = ${show(px.output)}${px.preact <= 0 ? ' (z ≤ 0: the pixel is cut to 0)' : ''}.`;
  }
  return `${activation}(z) = ${show(px.output)}.`;
}

function poolLine(g, px, output) {
  if (!g.pool) return 'No pooling follows this layer.';
  if (!px.window) return `No ${g.pool.size[0]}×${g.pool.size[1]} pooling window holds this pixel: the pooling drops it.`;
  const [y0, x0, y1, x1] = px.window;
  const values = output.slice(y0, y1).map((row) => row.slice(x0, x1).map(show).join(', ')).join('; ');
  if (g.pool.kind !== 'max') return `Average pooling: the window rows ${y0}–${y1 - 1}, columns ${x0}–${x1 - 1} (${values}) averages to ${show(px.pooled)}.`;
  const [sy, sx] = px.survivor;
  const kept = sy === px.y && sx === px.x ? 'this pixel survives the pooling'
    : `pixel (${sy}, ${sx}) survives, this one is dropped`;
  const ties = output.slice(y0, y1).flatMap((row) => row.slice(x0, x1)).filter((v) => v === px.pooled).length;
  const tie = ties > 1 ? ` (${ties} tie: PyTorch keeps the first)` : '';
  return `Max pooling: its window, rows ${y0}–${y1 - 1} and columns ${x0}–${x1 - 1}, holds ${values}; the largest, `
    + `${show(px.pooled)}, is pixel (${sy}, ${sx})${tie}: ${kept}.`;
}

/** The terms of dL/dW[c, i, j] from the answer's own input and δ: the few largest, their count and their sum. */
function gradTerms(a, c, i, j) {
  const [sy, sx] = a.geometry.stride;
  const [dy, dx] = a.geometry.dilation;
  const image = a.input[c];
  const all = [];
  let sum = 0;
  a.delta.forEach((row, y) => row.forEach((d, x) => {
    const I = image[y * sy + i * dy][x * sx + j * dx];
    sum += I * d;
    if (I * d !== 0) all.push({ I, d, p: I * d });
  }));
  all.sort((p, q) => Math.abs(q.p) - Math.abs(p.p));
  return { top: all.slice(0, 3), count: all.length, sum };
}

/** The input's row (or column) under kernel row i at output row y: y·stride + i·dilation, short when both are 1. */
const at = (y, s, i, d) => `${y}${s > 1 ? `·${s}` : ''} + ${i}${d > 1 ? `·${d}` : ''}`;

/** Half the step the frame keeps the map `f` to (q8s: 1/127 of each side's extreme). */
function frameHalfStep(arr, f) {
  const pos = arr?.pos?.[f] ?? 0;
  const neg = arr?.neg?.[f] ?? 0;
  return Math.max(pos, neg) / 254;
}

function frameValue(arr, f, y, x) {
  if (!arr) return null;
  const [, h, w] = arr.shape;
  return arr.values()[f * h * w + y * w + x];
}

function frameKernel(arr, f, c, kh, kw) {
  const [, inCh] = arr.shape;
  const values = arr.values();
  const start = (f * inCh + c) * kh * kw;
  return Array.from({ length: kh }, (_, i) => Array.from({ length: kw }, (__, j) => values[start + i * kw + j]));
}

// ---- small DOM pieces ------------------------------------------------------------------------------------------

function para(text, cls = null) {
  const p = document.createElement('p');
  if (cls) p.className = cls;
  p.textContent = text;
  return p;
}

function heading(text) {
  const h = document.createElement('h5');
  h.textContent = text;
  return h;
}

/** A sentence of text and numbers (Nodes) run together. */
function sentence(...parts) {
  const p = document.createElement('p');
  p.className = 'worked-line';
  p.append(...parts);
  return p;
}

/** A number in bold, its full value in data-value (for the curious and the tests). */
function value(testid, x) {
  const b = document.createElement('b');
  b.dataset.testid = testid;
  b.dataset.value = String(x);
  b.textContent = show(x);
  return b;
}

function sign(text) {
  const s = document.createElement('span');
  s.className = 'conv-sign';
  s.textContent = text;
  return s;
}

function figure(caption, content) {
  const fig = document.createElement('figure');
  fig.className = 'conv-fig';
  const cap = document.createElement('figcaption');
  cap.textContent = caption;
  fig.append(cap, content.root ?? content);
  return fig;
}

function tableFigure(caption, rows, range, testid, picked = -1) {
  const table = document.createElement('table');
  table.dataset.testid = testid;
  rows.forEach((row, i) => {
    const tr = table.insertRow();
    row.forEach((v, j) => {
      const cell = tr.insertCell();
      cell.textContent = minus(num(v));
      cell.dataset.value = String(v);
      cell.style.background = cssColor(v, range);
      cell.style.color = range && Math.abs(v / range) > 0.6 ? '#fff' : '#111';
      if (i * row.length + j === picked) cell.className = 'picked';
    });
  });
  const fig = figure(caption, table);
  fig.classList.add('numbers');
  return fig;
}

/**
 * A 2-D array drawn at native size and scaled up (pixelated), boxes over it ({y0, x0, y1, x1, cls}, ends
 * excluded); onClick(y, x) for a click on a pixel. Grey from the array's min to max, or diverging on ±max.
 */
function picture(rows, kind, boxes = [], onClick = null) {
  const h = rows.length;
  const w = rows[0]?.length ?? 0;
  const zoom = Math.max(2, Math.min(14, Math.floor(168 / Math.max(h, w, 1))));
  const root = document.createElement('div');
  root.className = 'conv-picture';
  const canvas = document.createElement('canvas');
  canvas.className = 'pixelated';
  canvas.width = w;
  canvas.height = h;
  canvas.style.width = `${w * zoom}px`;
  canvas.style.height = `${h * zoom}px`;
  const image = new ImageData(Math.max(1, w), Math.max(1, h));
  const px = new Uint32Array(image.data.buffer);
  const flat = rows.flat();
  const lo = Math.min(...flat);
  const hi = Math.max(...flat);
  const range = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
  flat.forEach((v, k) => {
    px[k] = kind === 'diverging' ? diverging.lut[divIndex(v / range)] : grey.lut[seqIndex(hi > lo ? (v - lo) / (hi - lo) : 0)];
  });
  canvas.getContext('2d').putImageData(image, 0, 0);
  root.append(canvas);
  for (const b of boxes) {
    const box = document.createElement('div');
    box.className = `conv-box${b.cls ? ` ${b.cls}` : ''}`;
    box.style.cssText = `left:${b.x0 * zoom - 2}px;top:${b.y0 * zoom - 2}px;`
      + `width:${(b.x1 - b.x0) * zoom}px;height:${(b.y1 - b.y0) * zoom}px`;
    root.append(box);
  }
  if (onClick) {
    canvas.style.cursor = 'crosshair';
    canvas.addEventListener('click', (e) => {
      const y = Math.floor(e.offsetY / zoom);
      const x = Math.floor(e.offsetX / zoom);
      if (y >= 0 && y < h && x >= 0 && x < w) onClick(y, x);
    });
  }
  return { root, canvas };
}
