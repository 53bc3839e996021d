/** The only wiring point: builds the store, the session and the views, and connects store events to views. */

import { api, tokens } from './api.js';
import { setText } from './dom.js';
import { drawNow, perf } from './frame.js';
import { Session } from './session.js';
import { Store } from './store.js';
import { followUrl, readUrl } from './urlstate.js';
import { ControlsView } from './views/controls.js';
import { CurvesView } from './views/curves.js';
import { FeatureMapsView } from './views/featuremaps.js';
import { FiltersView } from './views/filters.js';
import { FineTuneView } from './views/finetune.js';
import { InspectView } from './views/inspect.js';
import { KernelView } from './views/kernel.js';
import { MovedView } from './views/moved.js';
import { NoticeView } from './views/notice.js';
import { OwnImagesView } from './views/ownimages.js';
import { PatchesView } from './views/patches.js';
import { ProbeView } from './views/probe.js';
import { ProgressView } from './views/progress.js';
import { RatiosView } from './views/ratios.js';
import { RunsView } from './views/runs.js';
import { TimelineView } from './views/timeline.js';
import { WarningsView } from './views/warnings.js';

const boot = JSON.parse(document.getElementById('boot').textContent);
const store = new Store(boot);
const session = new Session(store);
const ctx = { store, session };
const $ = (id) => document.getElementById(id);
const perfLabel = $('perf');

const controls = new ControlsView($('controls'), ctx);
const progress = new ProgressView(document.body);
const filters = new FiltersView($('filters'), ctx);
const detail = new KernelView($('filter-detail'), ctx);
const patches = new PatchesView($('filter-patches'), ctx);
const probe = new ProbeView($('probe'), ctx);
const fmaps = new FeatureMapsView($('featuremaps'), ctx);
const curves = new CurvesView($('curves'));
const ratios = new RatiosView($('curves'));
const moved = new MovedView($('curves'), ctx);
const inspect = new InspectView($('inspect'), ctx);
const ownImages = new OwnImagesView($('own-images'), ctx);
const notice = new NoticeView($('notice'));
const timeline = new TimelineView($('timeline'), ctx);
const runs = new RunsView($('runs'), ctx);
const finetune = new FineTuneView($('finetune'), ctx);
const warnings = new WarningsView($('warnings'), ctx);

const snapshotViews = [filters, detail, patches, probe, fmaps];
// The inspector keeps its upload across a reconnect (it resets itself when the run changes); the
// notice keeps its sentence until read.
const perRun = [controls, progress, ...snapshotViews, curves, ratios, moved, timeline, warnings, finetune];

store.on('reset', () => perRun.forEach((v) => v.reset()));
store.on('datasets', (list) => { controls.datasets(list); finetune.datasets(list); });
store.on('usedataset', (name) => controls.useDataset(name));
// The stream brings 20-30 messages a second. The views follow it together, in one tick at most every
// STREAM_MS, so the browser lays out and paints the page 3 times a second instead of at every message. Each
// tick's frame (every snapshot panel redrawn, the document repainted and composited in software) is most of
// what the page costs the cores training shares with it: a Chromium with no DevTools watching a default run
// used 0.14-0.16 core per second of training at a tick every 160 ms, 0.10 at 333 ms, 0.09 at 500 ms
// (bench_perf's measure, 2026-12-06). The slow start shows the fast first steps at its own beat.
const STREAM_MS = 333;
// The two charts are the page's largest canvases: redrawn at most every CHART_MS while the stream flows (a
// curve moving once a second reads as live), in a stream tick, so they add no frames of their own.
const CHART_MS = 1000;
const changed = new Set();
let lastStatus = null;
let chartsDue = false;
let chartsAt = -Infinity;
let perfAt = -Infinity;
let tickAt = -Infinity;
let tickTimer = null;
function streamTick() {
  clearTimeout(tickTimer);
  tickTimer = null;
  tickAt = performance.now();
  const live = changed.has('snapshot') && store.cursor === null ? store.snapshot : null; // the head, drawn live
  if (changed.has('run')) [controls, progress, probe, inspect, warnings, finetune].forEach(updateShown);
  if (changed.has('run') && store.status !== lastStatus) {
    lastStatus = store.status;
    runs.update(store);
    detail.update(store); // a live run paused: its step can be worked out now
  }
  if (changed.has('steps') || changed.has('epoch') || changed.has('snapshot')) chartsDue = true;
  const now = performance.now();
  if (chartsDue && now - chartsAt >= CHART_MS) {
    chartsDue = false;
    chartsAt = now;
    curves.update(store);
    ratios.update(store);
    moved.redraw();
  }
  if (changed.has('epoch')) updateShown(inspect);
  if (changed.has('snapshot')) showMoment();
  if (changed.has('timeline')) timeline.update(store);
  if (changed.has('run') || changed.has('timeline')) moved.update(store);
  changed.clear();
  showPerf(now);
  drawNow(); // the canvases in the same frame as the text around them
  if (live?.sent_at) perf.shown(Date.now() - 1000 * live.sent_at); // encoded on the server to drawn here
  if (chartsDue) setTimeout(tick, chartsAt + CHART_MS - now); // the last curves, once the stream has stopped
}
/**
 * The stream tick, at most every STREAM_MS: at once when it has been quiet that long; else at the end of the
 * interval. A live snapshot waiting is not drawn by a tick that anything else brings: the next snapshot is
 * drawn as it arrives (~10 ms after the server encoded it, not up to a snapshot interval old; measured in
 * `filterscopePerf.latencies`), or, if none comes within another interval, the one waiting is.
 */
function tick(type) {
  const now = performance.now();
  const fresh = type === 'snapshot' || !changed.has('snapshot');
  if (fresh && now - tickAt >= STREAM_MS) streamTick();
  else if (tickTimer === null) tickTimer = setTimeout(tickDue, Math.max(0, tickAt + STREAM_MS - now));
}
function tickDue() {
  tickTimer = null;
  const now = performance.now();
  if (changed.has('snapshot') && now - tickAt < 2 * STREAM_MS) {
    tickTimer = setTimeout(tickDue, tickAt + 2 * STREAM_MS - now);
  } else streamTick();
}
/** The last snapshots' draw time, for people curious about it and for the e2e tests: at most once a second. */
function showPerf(now) {
  if (now - perfAt < 1000) return;
  perfAt = now;
  const s = perf.summary();
  if (s.count) setText(perfLabel, `draw ${s.median.toFixed(1)} ms (p95 ${s.p95.toFixed(1)} ms)`);
}
// Panels out of view wait: the feature maps skip the stream's updates while their panel is off screen (below
// the fold of a laptop's screen while a run trains: each redraw of theirs is painted and composited like a
// visible one) and catch up when it scrolls into view. Chromium watching a default run: 0.091 -> 0.087 core
// per second of training (bench_perf's measure, 3 rounds each, 2026-12-06); with the probe, kernel, patches
// and inspector panels waiting too it was 0.105 -> 0.092, but the browser tests read their text off screen.
const panelOf = new Map([[fmaps, $('featuremaps')]]);
const offScreen = new Set(); // panels the observer saw leave the screen
const behind = new Set(); // views that skipped an update while their panel was off screen
if ('IntersectionObserver' in window) {
  const seen = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (e.isIntersecting) offScreen.delete(e.target);
      else offScreen.add(e.target);
    }
    const due = [...behind].filter((v) => !offScreen.has(panelOf.get(v)));
    due.forEach((v) => { behind.delete(v); v.update(store); });
    if (due.length) drawNow();
  }, { rootMargin: '100px' });
  for (const el of new Set(panelOf.values())) if (el) seen.observe(el);
}
function updateShown(view) {
  if (panelOf.has(view) && offScreen.has(panelOf.get(view))) behind.add(view);
  else view.update(store);
}
function showMoment() {
  snapshotViews.forEach(updateShown);
  finetune.update(store); // from the moment shown
  updateShown(inspect);
  curves.moment(store);
  ratios.moment(store);
  moved.moment(store);
}
// The moment the timeline last drew at once: a 'timeline' event with the cursor elsewhere is a move.
let drawnCursor = null;
for (const type of ['run', 'steps', 'epoch', 'snapshot', 'timeline']) {
  store.on(type, () => {
    // A moment the person scrubbed or replayed to is drawn at once (one frame); the live stream is throttled,
    // the timeline growing by a live frame included (the slow start's cursor stays behind it: drawn at every
    // live frame, the dense start's ~30 a second made as many frames of the page).
    if (store.cursor === null) drawnCursor = null;
    // Each live frame is a point of the moved chart whatever moment is shown (the slow start's cursor, or one
    // scrubbed to, behind it: its points had been missing, and the chart drew a straight line over them), and
    // so is each moment shown (the slow start fetches those the socket dropped in the dense start's burst).
    if (type === 'timeline') moved.frame(store.head);
    if (type === 'snapshot') moved.frame(store.snapshot);
    const cursorMoved = type === 'snapshot' || store.cursor !== drawnCursor;
    if (store.cursor !== null && (type === 'snapshot' || type === 'timeline') && cursorMoved) {
      if (type === 'snapshot') showMoment();
      else {
        drawnCursor = store.cursor;
        timeline.update(store);
      }
      showPerf(performance.now());
      return;
    }
    changed.add(type);
    tick(type);
  });
}
store.on('view', (s) => [filters, detail, patches, fmaps].forEach((v) => v.update(s)));
// What each filter detects: fetched for the moment shown when a view needs it, drawn once it is here.
for (const type of ['snapshot', 'view', 'analyses']) store.on(type, () => session.loadAnalysis());
store.on('analysis', (s) => [filters, patches].forEach((v) => v.update(s)));
store.on('filterhistory', (s) => detail.update(s)); // the inspector's filter over the run, fetched by the store
store.on('warning', (s) => {
  warnings.update(s);
  curves.update(s); // marked on the loss chart
});
store.on('connection', (s) => {
  progress.connection(s.connection, s.connectionDetail);
  controls.update(s); // no control while the server cannot be reached
});
store.on('notice', (n) => notice.update(n));

// A run waiting in the queue moves up as others end; nothing on its quiet socket says so: ask now and then.
setInterval(async () => {
  if (store.status !== 'queued' || !store.runId) return;
  try {
    const run = await api.getRun(store.runId);
    if (run.status === 'queued') store.patchRun({ queue_position: run.queue_position });
  } catch {
    // the socket says what became of the run
  }
}, 2000);

// First paint of the empty state, then attach to the run in the URL if there is one.
store.emit('run', store);
store.emit('view', store);
// A server reachable from the network prints a link with its token (/?token=...): keep it, hide it.
const url = new URL(location.href);
if (url.searchParams.has('token')) {
  tokens.setServer(url.searchParams.get('token'));
  url.searchParams.delete('token');
  history.replaceState(null, '', url);
}
const wanted = readUrl();
if (wanted.mode) store.setView({ mode: wanted.mode });
if (wanted.run) {
  session.attach(wanted.run, { step: wanted.step });
  store.pendingFilter = wanted.filter; // selected once the first snapshot names the layers
}
followUrl(store);
// For the console and the e2e tests.
window.filterscope = { store, session, views: { controls, finetune, filters, detail, patches, probe, fmaps, curves, ratios, moved, inspect, ownImages, timeline, runs, warnings } };
