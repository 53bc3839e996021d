/** Every stored run: open one, resume an interrupted one, stop or delete one this browser started. */

import { api, tokens } from '../api.js';
import { isLive } from '../statuses.js';

const REFRESH_MS = 10000; // while a run trains: its progress, not worth a core's attention more often

function ago(seconds) {
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleDateString();
}

function duration(s) {
  const m = Math.floor(s / 60);
  return m ? `${m}:${String(Math.round(s % 60)).padStart(2, '0')} min` : `${s.toFixed(1)} s`;
}

export class RunsView {
  constructor(container, { store, session }) {
    this.store = store;
    this.session = session;
    this.list = container.querySelector('[data-role=list]');
    this.count = container.querySelector('[data-role=count]');
    this.runs = [];
    this.timer = null;
    this.picked = new Set(); // runs ticked for the compare page
    this.compareLink = document.createElement('a');
    this.compareLink.className = 'compare-link';
    this.compareLink.dataset.testid = 'compare-picked';
    this.compareLink.hidden = true;
    this.refresh();
  }

  reset() {}

  /** Refresh soon after the run changes state; and every few seconds while any run trains. */
  update() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), 400);
  }

  async refresh() {
    clearTimeout(this.timer);
    try {
      this.runs = await api.listRuns();
      this.render();
    } catch {
      // the list comes back at the next refresh
    }
    if (this.runs.some((r) => isLive(r.status))) this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
  }

  render() {
    const current = this.store.runId;
    // Only what is shown: a run training changes `elapsed` at every refresh, which the rows show rounded.
    const key = JSON.stringify([current, this.runs.map((r) => [r.id, r.status, r.history.length, r.snapshots,
      Math.round(r.elapsed), r.queue_position])]);
    if (key === this.rendered) return;
    this.rendered = key;
    this.count.textContent = this.runs.length ? `(${this.runs.length})` : '';
    if (!this.runs.length) {
      this.list.innerHTML = '<p class="empty">No runs yet: press Start.</p>';
      return;
    }
    this.list.replaceChildren(...this.runs.map((r) => {
      const row = document.createElement('div');
      row.className = 'run-row';
      row.dataset.testid = `run-row-${r.id}`;
      if (r.id === current) row.classList.add('current');
      const best = Math.max(-1, ...r.history.map((h) => h.test_accuracy ?? -1));
      const head = document.createElement('div');
      head.className = 'run-head';
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.dataset.status = r.status;
      badge.textContent = r.status;
      const what = document.createElement('span');
      const title = r.kind === 'watch' ? `${r.config.name} · your model` : `${r.config.dataset} · ${r.config.model}`;
      what.textContent = `${title}${best >= 0 ? ` · ${(100 * best).toFixed(1)}%` : ''}`;
      head.append(badge, what);
      const facts = document.createElement('div');
      facts.className = 'run-facts';
      const waiting = r.status === 'queued' && r.queue_position ? `waiting for a training slot: ${r.queue_position} in line` : '';
      // A run on a Ray cluster says where it trains while it does (node address and process).
      const where = r.worker ? ` · on ${r.worker.ip}, process ${r.worker.pid}` : '';
      facts.textContent = waiting ? `${ago(r.created_at)} · ${waiting} · ${r.id}`
        : `${ago(r.created_at)} · trained ${duration(r.elapsed)} · ${r.snapshots} snapshots${where} · ${r.id}`;
      const buttons = document.createElement('div');
      buttons.className = 'run-buttons';
      const mine = Boolean(tokens.get(r.id));
      const add = (label, testid, action, title = '') => {
        const b = document.createElement('button');
        b.type = 'button';
        b.textContent = label;
        b.title = title;
        b.dataset.testid = `${testid}-${r.id}`;
        b.addEventListener('click', () => this.act(action, r));
        buttons.append(b);
      };
      if (r.id !== current) add('Open', 'run-open', 'open');
      if (mine && r.status === 'interrupted') add('Resume', 'run-resume', 'resume', 'Go on from its last checkpoint');
      if (mine && isLive(r.status)) {
        if (waiting) add('Cancel', 'run-stop', 'stop', 'Take it out of the queue: it never trains');
        else add('Stop', 'run-stop', 'stop');
      }
      if (mine) add('Delete', 'run-delete', 'delete', 'Remove the run and its whole history');
      const pick = document.createElement('label');
      pick.className = 'pick';
      pick.title = 'Pick two or more runs to compare them side by side';
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = this.picked.has(r.id);
      box.dataset.testid = `run-pick-${r.id}`;
      box.addEventListener('change', () => {
        if (box.checked) this.picked.add(r.id);
        else this.picked.delete(r.id);
        this.showCompare();
      });
      pick.append(box, ' compare');
      buttons.append(pick);
      row.append(head, facts, buttons);
      return row;
    }));
    this.list.append(this.compareLink);
    this.showCompare();
  }

  /** A link to the compare page once two or more runs are picked. */
  showCompare() {
    const ids = this.runs.map((r) => r.id).filter((id) => this.picked.has(id));
    this.compareLink.hidden = ids.length < 2;
    this.compareLink.href = `/compare?runs=${ids.map(encodeURIComponent).join(',')}`;
    this.compareLink.textContent = `Compare ${ids.length} runs side by side →`;
  }

  async act(action, run) {
    try {
      if (action === 'open') this.session.attach(run.id);
      else if (action === 'resume') {
        await this.session.resume(run.id);
      } else if (action === 'stop') await api.stop(run.id);
      else if (action === 'delete') {
        if (!window.confirm(`Delete run ${run.id} and its whole history?`)) return;
        await api.deleteRun(run.id);
        if (run.id === this.store.runId) this.session.detach();
      }
    } catch (err) {
      this.store.notice(err.message);
    }
    this.refresh();
  }
}
