/**
 * Your own images as a data set: drop a .zip or a folder (or pick one), name it, import it (POST /api/datasets),
 * see the classes found with a few of their pictures and what was skipped, then train on it. A folder is
 * zipped in the browser first (zip.js), so both reach the server the same way and meet the same checks.
 * The data sets a person imported are listed here, each with Use (the run form's data set) and Delete.
 */

import { api } from '../api.js';
import { zipFiles } from '../zip.js';

const MAX_BYTES = 100 * 1024 * 1024; // the server's upload cap (FILTERSCOPE_MAX_DATASET_UPLOAD_BYTES default)
const MAX_FILES = 20_000; // the most pictures a data set holds (datasets/uploaded.py)

const bytesText = (n) => (n < 1e6 ? `${Math.max(1, Math.round(n / 1e3))} KB` : `${(n / 1e6).toFixed(1)} MB`);

/** A safe data set name from a file or folder name: 'My Leaves.zip' -> 'my-leaves'. */
export function safeName(text) {
  return text.replace(/\.zip$/i, '').toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^[-_]+|[-_]+$/g, '').slice(0, 40);
}

/** Every file under a dropped directory entry, with its path: [{name: 'root/class/a.jpg', file}]. */
async function walk(entry, prefix = '') {
  if (entry.isFile) return [{ name: prefix + entry.name, file: await new Promise((ok, fail) => entry.file(ok, fail)) }];
  const reader = entry.createReader();
  const out = [];
  for (;;) { // readEntries answers in batches until it answers none
    const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
    if (!batch.length) return out;
    for (const child of batch) out.push(...await walk(child, `${prefix}${entry.name}/`));
  }
}

export class OwnImagesView {
  constructor(root, { store }) {
    this.store = store;
    const q = (role) => root.querySelector(`[data-role=${role}]`);
    this.drop = q('drop');
    this.picked = q('picked');
    this.name = q('name');
    this.size = q('size');
    this.channels = q('channels');
    this.button = q('import');
    this.error = q('error');
    this.result = q('result');
    this.list = q('list');
    this.pick = null; // {label, files: [{name, file}]} for a folder, {label, zip: File} for a zip
    q('zip').addEventListener('change', (e) => { if (e.target.files[0]) this.chooseZip(e.target.files[0]); });
    q('folder').addEventListener('change', (e) => this.chooseFolder([...e.target.files].map(
      (file) => ({ name: file.webkitRelativePath || file.name, file }))));
    this.drop.addEventListener('dragover', (e) => { e.preventDefault(); this.drop.classList.add('over'); });
    this.drop.addEventListener('dragleave', () => this.drop.classList.remove('over'));
    this.drop.addEventListener('drop', (e) => this.dropped(e));
    this.button.addEventListener('click', () => this.import());
    this.name.addEventListener('input', () => this.ready());
    this.showList();
  }

  reset() {}

  async dropped(e) {
    e.preventDefault();
    this.drop.classList.remove('over');
    const entries = [...e.dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
    if (entries.length === 1 && entries[0].isDirectory) {
      this.chooseFolder(await walk(entries[0]));
    } else if (e.dataTransfer.files.length === 1 && /\.zip$/i.test(e.dataTransfer.files[0].name)) {
      this.chooseZip(e.dataTransfer.files[0]);
    } else {
      this.showError('Drop one .zip, or one folder with a sub-folder of pictures per class.');
    }
  }

  chooseZip(file) {
    this.pick = { label: file.name, zip: file, bytes: file.size };
    this.picked.textContent = `${file.name}: ${bytesText(file.size)}`;
    this.named(file.name);
  }

  chooseFolder(files) {
    if (!files.length) return;
    const root = files[0].name.split('/')[0];
    const bytes = files.reduce((n, f) => n + f.file.size, 0);
    // root/<class>/<picture>: the folders one level down (the server also looks one level deeper)
    const classes = new Set(files.map((f) => f.name.split('/')).filter((p) => p.length >= 3).map((p) => p[1]));
    this.pick = { label: root, files, bytes };
    this.picked.textContent = `${root}/: ${files.length.toLocaleString()} files in ${classes.size} folders, `
      + bytesText(bytes);
    this.named(root);
  }

  named(label) {
    this.showError('');
    if (!this.name.value) this.name.value = safeName(label);
    this.ready();
  }

  ready() { this.button.disabled = !this.pick || !this.name.value || this.busy; }

  async import() {
    const pick = this.pick;
    if (!pick) return;
    if (pick.bytes > MAX_BYTES) {
      this.showError(`That is ${(pick.bytes / 1e6).toFixed(0)} MB; the server takes at most ${MAX_BYTES / 1024 / 1024} MB. `
        + 'Use fewer or smaller pictures.');
      return;
    }
    if (pick.files && pick.files.length > MAX_FILES * 2) {
      this.showError(`The folder has ${pick.files.length.toLocaleString()} files; a data set holds at most `
        + `${MAX_FILES.toLocaleString()} pictures.`);
      return;
    }
    this.busy = true;
    this.ready();
    this.showError('');
    this.result.hidden = true;
    try {
      let zip = pick.zip;
      if (!zip) {
        zip = await zipFiles(pick.files, (done, total) => {
          if (done % 50 === 0 || done === total) this.picked.textContent = `reading ${done} of ${total} files…`;
        });
      }
      this.picked.textContent = `importing ${pick.label} (${bytesText(zip.size)})…`;
      const made = await api.importDataset(zip, pick.zip ? pick.label : `${pick.label}.zip`, {
        name: this.name.value, size: this.size.value, channels: this.channels.value });
      this.picked.textContent = '';
      this.pick = null;
      this.name.value = '';
      this.showResult(made);
      this.store.setDatasets(await api.datasets());
      this.showList();
    } catch (err) {
      this.picked.textContent = '';
      this.showError(err.message);
    } finally {
      this.busy = false;
      this.ready();
    }
  }

  /** What the import made: the classes with their counts and first test pictures, and what was skipped. */
  showResult(made) {
    const skipped = Object.entries(made.skipped);
    const head = document.createElement('p');
    head.dataset.testid = 'own-summary';
    head.textContent = `Imported ${made.name}: ${made.classes.length} classes, ${made.size}×${made.size} `
      + `${made.channels === 3 ? 'RGB' : 'grey'}, ${made.train_count} pictures to train on and ${made.test_count} to test. `
      + (skipped.length ? `Skipped ${skipped.map(([why, n]) => `${n} (${why})`).join(', ')}.` : 'Nothing was skipped.');
    const classes = made.classes.map((c) => {
      const row = document.createElement('div');
      row.className = 'own-class';
      row.dataset.testid = `own-class-${c}`;
      const label = document.createElement('span');
      label.textContent = `${c} · ${made.train_per_class[c]} + ${made.test_per_class[c]}`;
      label.title = `${made.train_per_class[c]} pictures to train on, ${made.test_per_class[c]} to test`;
      row.append(label, ...(made.examples[c] ?? []).map((i) => {
        const img = document.createElement('img');
        img.src = api.testImageUrl(made.name, i);
        img.alt = `${c}, test picture ${i}`;
        img.className = 'pixelated';
        return img;
      }));
      return row;
    });
    const use = this.useButton(made.name, 'Train on it');
    this.result.replaceChildren(head, ...classes, use);
    this.result.hidden = false;
  }

  useButton(name, text) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = text;
    b.dataset.testid = `own-use-${name}`;
    b.title = 'Choose it as the run form\'s data set; then press Start';
    b.addEventListener('click', () => this.store.useDataset(name));
    return b;
  }

  /** The data sets imported into this server, each with Use and Delete. */
  showList() {
    const own = this.store.boot.datasets.filter((d) => d.source === 'uploaded');
    this.list.replaceChildren(...own.map((d) => {
      const li = document.createElement('li');
      li.dataset.testid = `own-set-${d.name}`;
      const text = document.createElement('span');
      text.textContent = `${d.name}: ${d.classes.length} classes, ${d.train_count + d.test_count} pictures`;
      const del = document.createElement('button');
      del.type = 'button';
      del.textContent = 'Delete';
      del.dataset.testid = `own-delete-${d.name}`;
      del.addEventListener('click', () => this.remove(d.name));
      li.append(text, this.useButton(d.name, 'Use'), del);
      return li;
    }));
  }

  async remove(name) {
    if (!window.confirm(`Delete the data set ${name}? Runs that trained on it keep their history.`)) return;
    try {
      await api.deleteDataset(name);
      this.store.setDatasets(await api.datasets());
      this.showList();
      this.result.hidden = true;
    } catch (err) {
      this.showError(err.message);
    }
  }

  showError(message) {
    this.error.textContent = message;
    this.error.hidden = !message;
  }
}
