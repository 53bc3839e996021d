/** Fetch wrappers for the HTTP API; every failure becomes an ApiError with the server's sentence. */

export class ApiError extends Error {
  /** status: HTTP code (0: no answer); fields: {fieldName: message} for 422 validation errors. */
  constructor(status, message, fields = {}) {
    super(message);
    this.status = status;
    this.fields = fields;
  }
}

/** Turn an error answer into one sentence (FastAPI 422 lists become "field: message; ..."). */
function toError(status, body) {
  const detail = body?.detail;
  if (typeof detail === 'string') return new ApiError(status, detail);
  if (Array.isArray(detail)) {
    const fields = {};
    const parts = detail.map((d) => {
      const loc = (d.loc ?? []).filter((p) => p !== 'body' && p !== 'query');
      const name = loc.join('.');
      const msg = d.msg ?? String(d);
      if (name) fields[name] = msg;
      return name ? `${name}: ${msg}` : msg;
    });
    return new ApiError(status, parts.join('; '), fields);
  }
  return new ApiError(status, `The server answered ${status}.`);
}

/**
 * Control tokens, kept in this browser (localStorage), so every tab of it controls the runs it started:
 * `runs` maps a run id to the token POST /api/runs gave it; `server` is the token a server reachable from
 * the network asks for to start a run (from the link it printed: /?token=...).
 */
const KEY = 'filterscope.tokens';
const SERVER_KEY = 'filterscope.serverToken';

let cached = null; // parsed once, not at every check the page makes several times a second
addEventListener('storage', (e) => { if (e.key === KEY) cached = null; }); // another tab started a run

function readTokens() {
  if (cached) return cached;
  try {
    cached = JSON.parse(localStorage.getItem(KEY) ?? '{}') ?? {};
  } catch {
    cached = {};
  }
  return cached;
}

export const tokens = {
  get: (id) => readTokens()[id] ?? null,
  set(id, token) {
    const all = { ...readTokens() };
    all[id] = token;
    const ids = Object.keys(all);
    for (const old of ids.slice(0, Math.max(0, ids.length - 500))) delete all[old]; // the newest 500 runs
    localStorage.setItem(KEY, JSON.stringify(all));
    cached = all;
  },
  server: () => localStorage.getItem(SERVER_KEY),
  setServer: (token) => localStorage.setItem(SERVER_KEY, token),
};

async function request(method, path, { json, form, token } = {}) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'The server cannot be reached; is it running?');
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) throw toError(response.status, body);
  return body;
}

function fileForm(file) {
  const form = new FormData();
  form.append('file', file, file.name || 'upload.png');
  return form;
}

const run = (id) => `/api/runs/${encodeURIComponent(id)}`;

/** A control request for run `id`, carrying its token from this browser. */
const control = (method, id, suffix, body = {}) => request(method, `${run(id)}${suffix}`, { ...body, token: tokens.get(id) });

export const api = {
  async createRun(config) {
    const created = await request('POST', '/api/runs', { json: config, token: tokens.server() });
    tokens.set(created.id, created.token);
    return created;
  },
  getRun: (id) => request('GET', run(id)),
  pause: (id) => control('POST', id, '/pause'),
  resume: (id) => control('POST', id, '/resume'),
  step: (id) => control('POST', id, '/step'),
  stop: (id) => control('POST', id, '/stop'),
  setLr: (id, lr) => control('PATCH', id, '', { json: { lr } }),
  setProbe: (id, index) => control('PUT', id, '/probe', { json: { index } }),
  uploadProbe: (id, file) => control('POST', id, '/probe', { form: fileForm(file) }),
  snapshots: (id) => request('GET', `${run(id)}/snapshots`),
  listRuns: () => request('GET', '/api/runs'),
  deleteRun: (id) => control('DELETE', id, ''),
  /** A snapshot's binary frame (immutable: the browser may cache it). */
  async frame(id, seq) {
    const response = await fetch(`${run(id)}/snapshots/${seq}`);
    if (!response.ok) throw new ApiError(response.status, `Snapshot ${seq} could not be read (${response.status}).`);
    return response.arrayBuffer();
  },
  /** One filter's W, dW and ΔW at every snapshot (binary frame, f32 arrays). */
  async trajectory(id, layer, index) {
    const response = await fetch(`${run(id)}/filters/${encodeURIComponent(layer)}/${index}`);
    if (!response.ok) throw new ApiError(response.status, `The filter's history could not be read (${response.status}).`);
    return response.arrayBuffer();
  },
  inspect: (id, file, seq) => {
    const query = seq === null || seq === undefined ? '' : `?snapshot=${seq}`;
    return request('POST', `${run(id)}/inspect${query}`, { form: fileForm(file) });
  },
  /** One run per value of one config field; every run's token is kept, as for a run started here. */
  async createSweep(base, vary) {
    const created = await request('POST', '/api/sweeps', { json: { base, vary }, token: tokens.server() });
    for (const r of created.runs) tokens.set(r.id, r.token);
    return created;
  },
  sweep: (id) => request('GET', `/api/sweeps/${encodeURIComponent(id)}`),
  datasets: () => request('GET', '/api/datasets'),
  /** The class of every test image of a data set: {classes, test}. */
  labels: (name) => request('GET', `/api/datasets/${encodeURIComponent(name)}/labels`),
  /** Import a zip (a Blob) of one folder per class as data set `name` (ImportOut). */
  importDataset(zip, fileName, fields) {
    const form = new FormData();
    form.append('file', zip, fileName);
    for (const [key, value] of Object.entries(fields)) if (value !== '' && value !== null) form.append(key, String(value));
    return request('POST', '/api/datasets', { form, token: tokens.server() });
  },
  deleteDataset: (name) => request('DELETE', `/api/datasets/${encodeURIComponent(name)}`, { token: tokens.server() }),
  steps: (id) => request('GET', `${run(id)}/steps`),
  measures: (id) => request('GET', `${run(id)}/measures`),
  match: (a, b, layer, seqA, seqB) => request('GET', `/api/compare/match?${new URLSearchParams({
    a, b, layer, seq_a: String(seqA), seq_b: String(seqB) })}`),
  /** What each filter of `layer` detects at snapshot `seq` (TopLayerOut). */
  top: (id, seq, layer) => request('GET', `${run(id)}/snapshots/${seq}/top/${encodeURIComponent(layer)}`),
  /** Every test image of a data set, uint8 (N, C, H, W), and its shape. */
  async testPixels(dataset) {
    const response = await fetch(testPixelsUrl(dataset));
    if (!response.ok) throw new ApiError(response.status, `The test images could not be read (${response.status}).`);
    return { buffer: await response.arrayBuffer(), shape: response.headers.get('X-Shape').split(',').map(Number) };
  },
  testImageUrl: (dataset, index) => (ownImages(dataset)
    ? `/api/runs/${encodeURIComponent(ownImages(dataset))}/images/${index}.png`
    : `/api/datasets/${encodeURIComponent(dataset)}/test/${index}.png`),
};

/** A watched run's images are its own (config.dataset `run:<id>`), kept with the run: the run's id, else null. */
const ownImages = (dataset) => (dataset.startsWith('run:') ? dataset.slice(4) : null);
const testPixelsUrl = (dataset) => (ownImages(dataset)
  ? `/api/runs/${encodeURIComponent(ownImages(dataset))}/images.u8`
  : `/api/datasets/${encodeURIComponent(dataset)}/test.u8`);
