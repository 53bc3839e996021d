/** The runs as a table: one column per run (its colour), its settings with those that differ marked, how it
 * ended, its best test accuracy and how long it took to reach a chosen one. */

import { fmt } from '../colormap.js';

const FIELDS = ['dataset', 'model', 'optimizer', 'lr', 'lr_schedule', 'batch_size', 'epochs', 'weight_decay',
  'dropout', 'augment', 'train_subset', 'init', 'seed', 'snapshot_every', 'init_from', 'freeze'];

/** A config value as a person reads it: a fine-tuning start as "run r1 @ snapshot 17", none as "random". */
export function showValue(field, v) {
  if (field === 'init_from') return v ? `run ${v.run}${v.seq === null || v.seq === undefined ? '' : ` @ snapshot ${v.seq}`}` : 'random';
  if (field === 'freeze') return v?.length ? v.join(', ') : 'none';
  if (v === null || v === undefined) return '–';
  if (typeof v === 'number') return fmt(v);
  return String(v);
}

export class CompareTable {
  constructor(root, store) {
    this.store = store;
    this.table = root.querySelector('[data-role=table]');
    this.target = root.querySelector('[data-role=target]');
    this.target.addEventListener('input', () => {
      const t = Number(this.target.value);
      if (t > 0 && t <= 100) store.view.target = t / 100;
      this.update();
    });
  }

  /** The first epoch whose test accuracy reached `target`, with the training time it took. */
  static reached(run, target) {
    const h = run.history.find((row) => (row.test_accuracy ?? 0) >= target);
    const ended = !['queued', 'running', 'paused'].includes(run.status);
    return h ? `epoch ${h.epoch} (${h.wall_time.toFixed(1)} s)` : ended ? 'never' : 'not yet';
  }

  update() {
    const { runs, view } = this.store;
    const head = document.createElement('tr');
    head.append(document.createElement('th'), ...runs.map((r, i) => {
      const th = document.createElement('th');
      const a = document.createElement('a');
      a.href = `/?run=${encodeURIComponent(r.id)}`;
      a.textContent = r.label ?? r.id;
      a.title = `open ${r.id} on its own page`;
      th.style.borderTop = `4px solid ${this.store.color(i)}`;
      th.append(a);
      return th;
    }));
    const rows = [head];
    const row = (name, values, differs = false, testid = '') => {
      const tr = document.createElement('tr');
      if (differs) tr.className = 'differs';
      if (testid) tr.dataset.testid = testid;
      const th = document.createElement('th');
      th.textContent = name;
      tr.append(th, ...values.map((v) => {
        const td = document.createElement('td');
        td.textContent = v;
        return td;
      }));
      rows.push(tr);
    };
    for (const field of FIELDS) {
      const values = runs.map((r) => r.config[field]);
      row(field, values.map((v) => showValue(field, v)), new Set(values.map((v) => JSON.stringify(v))).size > 1, `row-${field}`);
    }
    row('status', runs.map((r) => (r.status === 'queued' && r.queue_position ? `queued (${r.queue_position} in line)` : r.status)));
    row('best test accuracy', runs.map((r) => {
      const best = Math.max(-1, ...r.history.map((h) => h.test_accuracy ?? -1));
      return best >= 0 ? `${(100 * best).toFixed(1)}%` : '–';
    }), false, 'row-best');
    row(`to ${Math.round(100 * view.target)}% test accuracy`, runs.map((r) => CompareTable.reached(r, view.target)), false, 'row-reached');
    row('warnings', runs.map((r) => r.warnings.map((w) => w.kind).join(', ') || 'none'), false, 'row-warnings');
    this.table.replaceChildren(...rows);
    const warned = runs.filter((r) => r.warnings.length);
    this.table.title = warned.map((r) => `${r.id}: ${r.warnings.map((w) => w.message).join(' ')}`).join('\n');
  }
}
