/**
 * The compare page's only wiring point: reads which runs to compare from the URL (?runs=ID,ID,... or
 * ?sweep=ID), loads their runs, curves and snapshot lists, follows them while they train, and connects the
 * store to the views.
 */

import { api } from '../api.js';
import { decodeFrame } from '../codec.js';
import { isEnded } from '../statuses.js';
import { NoticeView } from '../views/notice.js';
import { CompareCharts } from './charts.js';
import { CompareFilters } from './filters.js';
import { CompareStore } from './store.js';
import { CompareTable, showValue } from './table.js';

const POLL_MS = 2000; // while a run trains: its curves, history and snapshots, fetched again
const MAX_FRAMES = 600; // decoded frames kept (about 150 KB each once drawn)

const boot = JSON.parse(document.getElementById('boot').textContent);
const store = new CompareStore(boot);
const $ = (id) => document.getElementById(id);
const notice = new NoticeView($('notice'));
const state = $('compare-state');
store.on('notice', (n) => notice.update(n));

const loading = new Set();
async function load(id, seq) {
  const key = `${id}:${seq}`;
  if (loading.has(key)) return;
  loading.add(key);
  try {
    const frame = decodeFrame(await api.frame(id, seq));
    if (store.frames.size >= MAX_FRAMES) store.frames.delete(store.frames.keys().next().value);
    store.putFrame(id, frame);
  } catch (err) {
    store.notice(err.message);
  } finally {
    loading.delete(key);
  }
}

const table = new CompareTable($('compare-runs'), store);
const charts = new CompareCharts(document.body, store);
const filters = new CompareFilters($('compare-filters'), store, { load, match: api.match });
store.on('runs', () => { table.update(); charts.update(); filters.update(); });
store.on('steps', () => charts.update());
store.on('moment', () => filters.update());
store.on('frames', () => filters.update());

/** Name each run by what sets it apart: the fields that differ between the runs (else its id). */
function labels(runs, sweepField = null) {
  const fields = sweepField ? [sweepField] : Object.keys(runs[0]?.config ?? {}).filter(
    (f) => new Set(runs.map((r) => JSON.stringify(r.config[f]))).size > 1);
  for (const r of runs) {
    const parts = fields.slice(0, 3).map((f) => (f === 'init_from' ? (r.config[f] ? 'pretrained' : 'from scratch')
      : `${f} ${showValue(f, r.config[f])}`));
    r.label = parts.length ? parts.join(', ') : r.id;
  }
  return runs;
}

let ids = [];
let sweepField = null;

async function refresh() {
  const runs = [];
  for (const id of ids) {
    try {
      runs.push(await api.getRun(id));
    } catch (err) {
      store.notice(`${id}: ${err.message}`);
    }
  }
  const known = new Map(store.runs.map((r) => [r.id, r]));
  store.setRuns(labels(runs, sweepField));
  for (const run of runs) {
    const before = known.get(run.id);
    // An ended run read once is read.
    if (before && before.status === run.status && isEnded(run.status) && store.steps[run.id]) continue;
    try {
      const [steps, index] = await Promise.all([api.steps(run.id), api.snapshots(run.id)]);
      store.setIndex(run.id, index);
      store.setSteps(run.id, steps);
    } catch (err) {
      store.notice(`${run.id}: ${err.message}`); // and try again at the next poll
    }
  }
  state.textContent = store.live ? 'following the runs as they train…' : '';
  state.dataset.state = store.live ? 'live' : 'idle';
  if (store.live) setTimeout(refresh, POLL_MS);
}

async function start() {
  const url = new URL(location.href);
  const sweep = url.searchParams.get('sweep');
  try {
    if (sweep) {
      const s = await api.sweep(sweep);
      ids = s.runs.map((r) => r.id);
      sweepField = s.field;
      document.title = `filterscope · sweep of ${s.field}`;
    } else {
      ids = (url.searchParams.get('runs') ?? '').split(',').map((x) => x.trim()).filter(Boolean).slice(0, 8);
    }
  } catch (err) {
    store.notice(err.message);
    return;
  }
  if (ids.length < 2) {
    store.notice('Name at least two runs to compare: /compare?runs=ID,ID (or pick them in the Runs list of the main page).');
    return;
  }
  await refresh();
}

/** Until the person moves the slider, the filters follow the newest moment of the runs. */
let followed = true;
document.querySelector('[data-role=slider]').addEventListener('input', () => { followed = false; });
document.querySelector('[data-role=play]').addEventListener('click', () => { followed = false; });
store.on('steps', () => {
  if (!followed) return;
  const last = Math.max(0, ...store.runs.map((r) => (store.index[r.id] ?? []).at(-1)?.step ?? 0));
  const epochs = Math.max(0, ...store.runs.map((r) => r.history.length));
  const at = store.view.align === 'epoch' ? epochs : last;
  if (at !== store.view.at) store.setView({ at });
});

start();
window.filterscope = { store, views: { table, charts, filters } };

for (const [role, kind] of [['csv-steps', 'steps'], ['csv-epochs', 'epochs']]) {
  document.querySelector(`[data-role=${role}]`).addEventListener('click', (e) => {
    const a = e.currentTarget;
    a.href = URL.createObjectURL(new Blob([charts.csv(kind)], { type: 'text/csv' }));
    a.download = `compare-${kind}.csv`;
  });
}
