/** Decodes the server's binary snapshot frames and base64 arrays (docs/protocol.md) into NdArrays. */

/** A typed array with its shape, decoded to float values at most once. */
export class NdArray {
  constructor(q, shape, dtype, { scale = 1, lo = null, hi = null, neg = null, pos = null } = {}) {
    this.q = q; // Int16Array (q16), Int8Array (q8s) or Uint8Array (u8), a view on the frame: no copy
    this.shape = shape;
    this.dtype = dtype;
    this.scale = scale;
    this.lo = lo;
    this.hi = hi;
    this.neg = neg; // q8s: per entry of the first axis, its largest negative and positive magnitudes
    this.pos = pos;
    this._values = null;
  }

  /** max(0, values) of `source` (a signed NdArray), computed on first use: a map after its ReLU. */
  static relu(source) {
    const arr = new NdArray(source.q, source.shape, 'relu');
    arr.source = source;
    return arr;
  }

  get size() { return this.q.length; }

  /** Per-entry size of the first axis (e.g. one filter, one feature map). */
  get stride() { return this.shape.length > 1 ? this.q.length / this.shape[0] : 1; }

  /** Float32Array of the real values, computed on first use and cached. */
  values() {
    if (this._values) return this._values;
    const { q } = this;
    const out = new Float32Array(q.length);
    if (this.dtype === 'f32') {
      this._values = this.q;
      return this.q;
    }
    if (this.dtype === 'relu') {
      const v = this.source.values();
      for (let i = 0; i < v.length; i++) out[i] = v[i] > 0 ? v[i] : 0;
    } else if (this.dtype === 'q8s') {
      const n = this.stride;
      for (let c = 0; c < this.shape[0]; c++) {
        const up = this.pos[c] / 127;
        const down = this.neg[c] / 127;
        for (let i = c * n, end = i + n; i < end; i++) out[i] = q[i] > 0 ? q[i] * up : q[i] * down;
      }
    } else if (this.dtype === 'q16') {
      const f = this.scale / 32767;
      for (let i = 0; i < q.length; i++) out[i] = q[i] * f;
    } else if (this.lo && this.hi) {
      const n = this.stride;
      for (let c = 0; c < this.shape[0]; c++) {
        const lo = this.lo[c];
        const f = (this.hi[c] - lo) / 255;
        for (let i = c * n, end = i + n; i < end; i++) out[i] = lo + q[i] * f;
      }
    } else {
      for (let i = 0; i < q.length; i++) out[i] = q[i];
    }
    this._values = out;
    return out;
  }

  /** Largest |value| over the whole array (q16: exactly `scale`). */
  maxAbs() {
    if (this.dtype === 'q16') return this.scale;
    if (this.dtype === 'q8s') return Math.max(0, ...this.neg, ...this.pos);
    if (this.dtype === 'relu') return Math.max(0, ...this.source.pos);
    if (this.dtype === 'f32') {
      let m = 0;
      for (const v of this.q) m = Math.max(m, Math.abs(v));
      return m;
    }
    if (this.lo && this.hi) {
      let m = 0;
      for (let c = 0; c < this.lo.length; c++) m = Math.max(m, Math.abs(this.lo[c]), Math.abs(this.hi[c]));
      return m;
    }
    return 255;
  }

  /** Smallest value (cheap for u8 with lo/hi). */
  min() {
    if (this.lo) return Math.min(...this.lo);
    if (this.dtype === 'q8s') return -Math.max(0, ...this.neg);
    if (this.dtype === 'relu') return 0;
    let m = Infinity;
    const v = this.values();
    for (let i = 0; i < v.length; i++) if (v[i] < m) m = v[i];
    return m;
  }
}

const TYPES = { q16: Int16Array, q8s: Int8Array, u8: Uint8Array, f32: Float32Array };

function isArraySpec(o) {
  return o && typeof o === 'object' && 'dtype' in o && 'shape' in o && ('offset' in o || 'data' in o);
}

function makeArray(spec, buffer, byteOffset) {
  const Type = TYPES[spec.dtype];
  if (!Type) throw new Error(`unknown dtype ${spec.dtype}`);
  const size = spec.shape.reduce((a, b) => a * b, 1);
  const q = new Type(buffer, byteOffset, size);
  const arr = new NdArray(q, spec.shape, spec.dtype, spec);
  if (spec.name) arr.name = spec.name; // inspect answers name their layers inside the array object
  return arr;
}

/** Replace every array descriptor in a parsed header by an NdArray (recursively). */
function resolve(node, toArray) {
  if (Array.isArray(node)) return node.map((x) => resolve(x, toArray));
  if (node && typeof node === 'object') {
    if (isArraySpec(node)) return toArray(node);
    const out = {};
    for (const [k, v] of Object.entries(node)) out[k] = resolve(v, toArray);
    return out;
  }
  return node;
}

const utf8 = new TextDecoder();

/**
 * Decode one binary snapshot frame: uint32 header length H, JSON header, then the payload whose
 * arrays sit at `offset` bytes from the payload start (4 + H), as docs/protocol.md says.
 */
export function decodeFrame(buffer) {
  const headerLength = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(utf8.decode(new Uint8Array(buffer, 4, headerLength)));
  const payload = 4 + headerLength;
  const frame = resolve(header, (spec) => makeArray(spec, buffer, payload + spec.offset));
  for (const layer of frame.layers ?? []) {
    // After a ReLU the feature map is max(0, preact): the frame carries the pre-activation maps only.
    if (layer.fmap?.dtype === 'relu') layer.fmap = NdArray.relu(layer[layer.fmap.of]);
  }
  frame.bytes = 3 * buffer.byteLength; // what it holds once its arrays are decoded to floats (FrameCache)
  return frame;
}

/** Decode base64 `data` arrays, as in the inspect answer. */
export function decodeBase64Arrays(answer) {
  return resolve(answer, (spec) => {
    const text = atob(spec.data);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    // Copy into a fresh buffer so q16 views are 2-byte aligned.
    return makeArray(spec, bytes.buffer, 0);
  });
}
