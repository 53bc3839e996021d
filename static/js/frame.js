/**
 * One redraw per animation frame: views mark themselves dirty with requestDraw(view) and the
 * scheduler calls view.draw() once in the next frame. Anything that arrived in between is simply
 * overwritten in the view, so a stream faster than the screen drops frames instead of queueing.
 */

const dirty = new Set();
let scheduled = 0; // the animation frame requested for the dirty views, 0 when none

/**
 * Timings, readable from the console and the e2e tests as `window.filterscopePerf`: `snapshotDraws`
 * holds, per frame that drew a new snapshot, the milliseconds spent in the views drawing it.
 */
export const perf = {
  frames: 0,
  last: 0, // ms of the last frame, every view included
  max: 0,
  snapshotDraws: [], // the last 200
  latencies: [], // the last 200 live snapshots drawn: ms from their encoding on the server (`sent_at`)
  shown(ms) {
    this.latencies.push(ms);
    if (this.latencies.length > 200) this.latencies.shift();
  },
  record(frameMs, snapshotMs) {
    this.frames += 1;
    this.last = frameMs;
    this.max = Math.max(this.max, frameMs);
    if (snapshotMs !== null) {
      this.snapshotDraws.push(snapshotMs);
      if (this.snapshotDraws.length > 200) this.snapshotDraws.shift();
    }
  },
  summary() {
    const s = [...this.snapshotDraws].sort((a, b) => a - b);
    const pick = (p) => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : 0);
    return { count: s.length, median: pick(0.5), p95: pick(0.95), max: s.length ? s[s.length - 1] : 0 };
  },
};
window.filterscopePerf = perf;

function flush() {
  scheduled = 0;
  const t0 = performance.now();
  let snapshotMs = null;
  const views = [...dirty];
  dirty.clear();
  for (const view of views) {
    const counts = Boolean(view.drawsSnapshot);
    const v0 = performance.now();
    view.draw();
    if (counts) snapshotMs = (snapshotMs ?? 0) + performance.now() - v0;
  }
  perf.record(performance.now() - t0, snapshotMs);
}

/** Ask for view.draw() in the next animation frame (once, however often this is called). */
export function requestDraw(view) {
  dirty.add(view);
  if (!scheduled) scheduled = requestAnimationFrame(flush);
}

/**
 * Draw the dirty views now, in this task, instead of in the next animation frame: called at the end of a
 * stream tick, the DOM it wrote and the canvases it asked for go out in one frame, not two (each frame the
 * browser lays out, paints and composites costs the cores training shares with the page).
 */
export function drawNow() {
  if (!scheduled) return;
  cancelAnimationFrame(scheduled);
  flush();
}
