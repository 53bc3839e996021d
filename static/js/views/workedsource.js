/**
 * The inspector's worked numbers from the server (GET …/snapshots/{seq}/convolution|update/{layer}/{filter}):
 * the answers kept by path, and at most one request in flight per source, the latest wanted next, so a live
 * run's stream of moments asks for one at a time and never queues replays on the server's low-priority worker.
 */

import { ApiError, tokens } from '../api.js';

const KEEP = 48; // answers kept: clicking around a few moments and filters asks the server once each
const RETRY_MS = 2000; // a refusal that may pass (a snapshot not stored yet) is asked again after this long

/** GET `path` as JSON, with this browser's control token for the run (an owner's work has a lane of its own on
 * the server, never behind viewers'); failures as ApiError with the server's sentence. */
async function getJson(path) {
  const headers = { Accept: 'application/json' };
  const token = tokens.get(decodeURIComponent(path.split('/')[3]));
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { headers });
  } catch {
    throw new ApiError(0, 'The server cannot be reached; is it running?');
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = typeof body?.detail === 'string' ? body.detail : `The server answered ${response.status}.`;
    throw new ApiError(response.status, detail);
  }
  return body;
}

/** The path of a worked answer: kind 'convolution' or 'update'; query: {y, x} or nothing. */
export function workedPath(kind, runId, seq, layer, filter, query = null) {
  const base = `/api/runs/${encodeURIComponent(runId)}/snapshots/${seq}/${kind}/${encodeURIComponent(layer)}/${filter}`;
  return query ? `${base}?${new URLSearchParams(query)}` : base;
}

const anyMoment = (path) => path.replace(/\/snapshots\/\d+\//, '/snapshots/*/');

export class WorkedSource {
  /** onArrive(): an answer (or a refusal) came; the views redraw from `get`. */
  constructor(onArrive) {
    this.onArrive = onArrive;
    this.answers = new Map(); // path -> {body} | {error, at}
    this.newest = new Map(); // the path at any moment ('/snapshots/*/') -> the newest moment's path answered
    this.asking = null; // the path whose answer is on its way (one at a time)
    this.wanted = null;
  }

  reset() {
    this.answers.clear();
    this.newest.clear();
    this.wanted = null;
  }

  /** {body} or {error} for `path` if known; otherwise it is asked for (after the one in flight), and meanwhile
   * null, or with `earlier` the answer for the same thing at the newest moment answered so far, as
   * {body, earlier: true}: a live run's moments come faster than a busy server works each out. */
  get(path, { earlier = false } = {}) {
    const known = this.answers.get(path);
    if (known && !(known.error && known.retry && performance.now() - known.at > RETRY_MS)) return known;
    if (path !== this.asking) this.wanted = path; // not asked twice while its answer is on its way
    this.pump();
    if (known || !earlier) return known ?? null;
    const before = this.answers.get(this.newest.get(anyMoment(path)));
    return before?.body ? { body: before.body, earlier: true } : null;
  }

  async pump() {
    if (this.asking !== null || !this.wanted) return;
    const path = this.wanted;
    this.wanted = null;
    this.asking = path;
    let answer;
    try {
      answer = { body: await getJson(path) };
    } catch (e) {
      // 409 "not stored yet" and a server out of reach may pass; every other refusal is the answer.
      answer = { error: e.message, retry: e.status === 0 || /again/.test(e.message), at: performance.now() };
    }
    this.answers.delete(path);
    this.answers.set(path, answer);
    if (answer.body) this.newest.set(anyMoment(path), path);
    while (this.answers.size > KEEP) this.answers.delete(this.answers.keys().next().value);
    this.asking = null;
    this.onArrive();
    if (answer.retry) setTimeout(() => this.onArrive(), RETRY_MS + 50); // the views ask again then
    this.pump();
  }
}
