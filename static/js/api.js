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

async function request(method, path, { json, form } = {}) {
  const init = { method, headers: { Accept: 'application/json' } };
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

export const api = {
  createRun: (config) => request('POST', '/api/runs', { json: config }),
  getRun: (id) => request('GET', run(id)),
  pause: (id) => request('POST', `${run(id)}/pause`),
  resume: (id) => request('POST', `${run(id)}/resume`),
  step: (id) => request('POST', `${run(id)}/step`),
  stop: (id) => request('POST', `${run(id)}/stop`),
  setLr: (id, lr) => request('PATCH', run(id), { json: { lr } }),
  setProbe: (id, index) => request('PUT', `${run(id)}/probe`, { json: { index } }),
  uploadProbe: (id, file) => request('POST', `${run(id)}/probe`, { form: fileForm(file) }),
  snapshots: (id) => request('GET', `${run(id)}/snapshots`),
  inspect: (id, file, seq) => {
    const query = seq === null || seq === undefined ? '' : `?snapshot=${seq}`;
    return request('POST', `${run(id)}/inspect${query}`, { form: fileForm(file) });
  },
  testImageUrl: (dataset, index) => `/api/datasets/${encodeURIComponent(dataset)}/test/${index}.png`,
};
