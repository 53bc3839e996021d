/**
 * The timeline: one scrubber over the run's snapshots that drives every panel, Live to follow the head,
 * Play to replay from any moment. Keys: ← → Home End, and space plays when the page is not following a
 * training run (then space pauses training, as the controls say).
 */

const MIN_FRAME_MS = 33; // 30 moments a second at most
const LABEL_EVERY = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]; // epochs between numbered marks
const MIN_LABEL_PX = 10; // room per digit of an epoch number, its gap included (10 px type)
const SPEEDS = { 10: 'whole run in 10 s', 30: 'in 30 s', 60: 'in 60 s', fps30: '30 moments a second' };

export class TimelineView {
  constructor(container, { store, session }) {
    this.store = store;
    this.session = session;
    this.root = container;
    const $ = (role) => container.querySelector(`[data-role=${role}]`);
    this.slider = $('slider');
    this.ticks = $('ticks');
    this.label = $('label');
    this.playButton = $('play');
    this.liveButton = $('live');
    this.speed = $('speed');
    this.speed.replaceChildren(...Object.entries(SPEEDS).map(([value, text]) => new Option(text, value)));
    this.slider.addEventListener('input', () => this.seekIndex(Number(this.slider.value), true));
    $('first').addEventListener('click', () => this.seekIndex(0, true));
    $('prev').addEventListener('click', () => this.stepBy(-1));
    $('next').addEventListener('click', () => this.stepBy(1));
    this.playButton.addEventListener('click', () => this.togglePlay());
    this.liveButton.addEventListener('click', () => this.goLive());
    document.addEventListener('keydown', (e) => this.onKey(e));
    new ResizeObserver(() => this.drawTicks(this.store.index)).observe(this.ticks);
    this.timer = null;
    this.ticksFor = '';
  }

  reset() {
    this.stop();
    this.ticksFor = '';
    this.ticks.replaceChildren();
  }

  update(state) {
    const n = state.index.length;
    this.root.hidden = !state.runId;
    const max = String(Math.max(0, n - 1));
    if (this.slider.max !== max) this.slider.max = max;
    this.slider.disabled = n < 2;
    const at = state.position;
    if (document.activeElement !== this.slider || !state.playing) this.slider.value = String(Math.max(0, at));
    const live = state.cursor === null;
    this.liveButton.setAttribute('aria-pressed', String(live));
    this.liveButton.disabled = live;
    this.liveButton.textContent = state.isLive ? 'Live' : 'Last';
    this.playButton.textContent = state.playing ? '❚❚ Pause' : '▶ Play';
    this.playButton.disabled = n < 2;
    this.drawTicks(state.index);
    const ref = state.index[at];
    const shown = state.snapshot;
    const waiting = state.cursor !== null && shown && shown.seq !== state.cursor;
    let text = 'no snapshot yet';
    if (ref) {
      const epoch = ref.epoch_end ? `end of epoch ${ref.epoch}` : `epoch ${ref.epoch + 1}`;
      const where = live ? (state.isLive ? ' · live' : ' · the last moment') : state.playing ? ' · replaying' : '';
      text = `step ${ref.step} · ${epoch} · snapshot ${at + 1} of ${n}${where}${waiting ? ' · loading…' : ''}`;
    }
    if (this.label.textContent !== text) this.label.textContent = text; // no layout for an unchanged label
    this.label.dataset.step = ref ? String(ref.step) : '';
  }

  /** Epoch ends as marks under the slider, where they fall among the snapshots; numbered every 1, 2, 5, 10...
   * epochs, as often as their labels fit side by side (a 60-epoch run's 60 numbers would overlap). */
  drawTicks(index) {
    const ends = index.filter((r) => r.epoch_end);
    const width = this.ticks.clientWidth;
    const key = `${index.length}:${ends.length}:${width}`;
    if (key === this.ticksFor) return;
    this.ticksFor = key;
    const n = Math.max(1, index.length - 1);
    const gap = MIN_LABEL_PX * String(ends.at(-1)?.epoch ?? 1).length; // px from one number's centre to the next
    const room = width / Math.max(1, ends.length); // px per epoch, if they fall evenly
    const every = LABEL_EVERY.find((k) => k * room >= gap) ?? LABEL_EVERY.at(-1);
    let last = -Infinity; // where the last number went: one that would touch it is left out
    this.ticks.replaceChildren(...index.flatMap((r, i) => {
      if (!r.epoch_end) return [];
      const mark = document.createElement('span');
      mark.className = 'tick';
      mark.style.left = `${(100 * i) / n}%`;
      mark.title = `end of epoch ${r.epoch} (step ${r.step})`;
      const x = (width * i) / n;
      if ((r.epoch % every === 0 || every === 1) && x - last >= gap) {
        mark.textContent = String(r.epoch);
        last = x;
      }
      return [mark];
    }));
  }

  seekIndex(i, byHand) {
    const { index } = this.store;
    if (!index.length) return;
    const at = Math.max(0, Math.min(index.length - 1, i));
    if (byHand) this.stop();
    this.session.seek(at === index.length - 1 && byHand && this.store.isLive ? null : index[at].seq);
  }

  stepBy(delta) {
    this.seekIndex(this.store.position + delta, true);
  }

  goLive() {
    this.stop();
    this.session.seek(null);
  }

  togglePlay() {
    if (this.store.playing) this.stop();
    else this.play();
  }

  play() {
    const { store } = this;
    if (store.index.length < 2) return;
    if (store.position >= store.index.length - 1) this.session.seek(store.index[0].seq); // from the start
    store.setPlaying(true);
    this.nextAt = performance.now();
    this.schedule();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.store.playing) this.store.setPlaying(false);
  }

  frameMs() {
    const v = this.speed.value;
    if (v === 'fps30') return MIN_FRAME_MS;
    return Math.max(MIN_FRAME_MS, (1000 * Number(v)) / Math.max(1, this.store.index.length));
  }

  /** One moment further every frameMs (on a fixed beat, so timer delays do not add up); a moment whose frame
   * has not arrived yet is waited for, not skipped. */
  schedule() {
    this.nextAt += this.frameMs();
    this.timer = setTimeout(() => {
      const { store } = this;
      if (!store.playing) return;
      const shownIsWanted = store.snapshot && store.snapshot.seq === (store.cursor ?? store.head?.seq);
      if (shownIsWanted) {
        const next = store.position + 1;
        if (next >= store.index.length) {
          this.stop();
          if (store.isLive) this.session.seek(null); // caught up with the training: follow it
          return;
        }
        this.session.seek(store.index[next].seq);
      } else {
        this.nextAt = performance.now(); // waiting for a frame: the beat starts again when it comes
      }
      this.schedule();
    }, Math.max(0, this.nextAt - performance.now()));
  }

  onKey(e) {
    if (!this.store.runId || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target.closest?.('input, select, textarea, [contenteditable]') && e.target !== this.slider) return;
    if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
      if (e.target === this.slider) return; // the range input moves itself
      e.preventDefault();
      this.stepBy(e.key === 'ArrowLeft' ? -1 : 1);
    } else if (e.key === 'Home') {
      e.preventDefault();
      this.seekIndex(0, true);
    } else if (e.key === 'End') {
      e.preventDefault();
      this.goLive();
    } else if (e.key === ' ' && (this.store.cursor !== null || !this.store.isLive)) {
      if (e.target.closest?.('button')) return;
      e.preventDefault(); // looking back: space plays; following live training, it pauses training (controls)
      this.togglePlay();
    }
  }
}
