/**
 * The URL holds the view: /?run=ID&step=N&filter=conv1.3&mode=grad opens run ID at the snapshot at or before
 * step N, with the kernel inspector on filter 3 of conv1, showing dW. The page keeps the URL in step with
 * what it shows (replacing the entry, so scrubbing does not flood the browser's history).
 */

const MODES = new Set(['weight', 'grad', 'update', 'detects']);
const WRITE_MS = 250;

/** What the address asks for. */
export function readUrl(href = location.href) {
  const url = new URL(href);
  const step = url.searchParams.get('step');
  const filter = url.searchParams.get('filter');
  const found = filter && /^(.+)\.(\d+)$/.exec(filter);
  const mode = url.searchParams.get('mode');
  return {
    run: url.searchParams.get('run'),
    step: step !== null && /^\d+$/.test(step) ? Number(step) : null,
    filter: found ? { name: found[1], index: Number(found[2]) } : null,
    mode: MODES.has(mode) ? mode : null,
  };
}

/** The address for what the store shows now. */
export function urlFor(store, href = location.href) {
  const url = new URL(href);
  const set = (key, value) => (value === null || value === undefined ? url.searchParams.delete(key)
    : url.searchParams.set(key, String(value)));
  set('run', store.runId);
  // The slow start's moment is the page's, not the person's: the address says it once they stop there.
  const ref = store.lookingBack ? store.index.find((r) => r.seq === store.cursor) : null;
  set('step', store.runId && ref ? ref.step : null);
  const sel = store.view.selected;
  const layer = sel && (store.snapshot ?? store.head)?.layers[sel.layer];
  set('filter', store.runId && layer ? `${layer.name}.${sel.index}` : store.pendingFilter
    ? `${store.pendingFilter.name}.${store.pendingFilter.index}` : null);
  set('mode', store.view.mode !== 'weight' ? store.view.mode : null);
  return url;
}

/** Keep the URL following the store; apply what the URL asked for once the run's snapshots are here. */
export function followUrl(store) {
  let timer = null;
  const write = () => {
    timer = null;
    const url = urlFor(store);
    if (url.href !== location.href) history.replaceState(null, '', url);
  };
  const later = () => { timer ??= setTimeout(write, WRITE_MS); };
  for (const type of ['timeline', 'view', 'reset']) store.on(type, later);
  store.on('snapshot', () => {
    const want = store.pendingFilter;
    const layers = store.snapshot?.layers;
    if (!want || !layers) return;
    store.pendingFilter = null;
    const li = layers.findIndex((l) => l.name === want.name);
    if (li >= 0 && want.index < layers[li].weight.shape[0]) store.setView({ selected: { layer: li, index: want.index } });
  });
}
