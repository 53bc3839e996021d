/**
 * The timeline: one scrubber over the run's snapshots that drives every panel, Live to follow the head,
 * Play to replay from any moment. Keys: ← → Home End, and space plays when the page is not following a
 * training run (then space pauses training, as the controls say).
 *
 * The slow start: live, a fresh run's first 100 steps (its fastest-changing, densely stored moments) pass in well
 * under a second. The page walks them one stored moment at a time, none skipped, over about SLOW_MS, then goes
 * live; training is never slowed, only the moment shown lags behind it and catches up. A checkbox turns it off
 * (remembered in this browser); Live, End or any scrub ends it at once.
 */

import { setAttr, setHidden, setProp, setStyle, setText } from '../dom.js';
import { SLOW_UNTIL_STEP } from '../store.js';

const MIN_FRAME_MS = 33; // 30 moments a second at most
const LABEL_EVERY = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]; // epochs between numbered marks
const MIN_LABEL_PX = 10; // room per digit of an epoch number, its gap included (10 px type)
const SLOW_MS = 4000; // the dense start's ~29 moments over 4 s: ~140 ms each, long enough for an eye to follow
const SLOW_BEAT_MS = [60, 250]; // the slowest and fastest beat, whatever the number of moments
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
    // The marks' width, from the observer: read in an update, after its writes, it would lay the page out there.
    this.ticksWidth = 0;
    new ResizeObserver(([entry]) => {
      this.ticksWidth = entry.contentRect.width;
      this.drawTicks(this.store.index);
    }).observe(this.ticks);
    this.slowBox = $('slow');
    this.slowBox.checked = store.slowStart;
    this.slowBox.addEventListener('change', () => store.setSlowStart(this.slowBox.checked));
    this.timer = null;
    this.slowTimer = null;
    this.slowOn = false;
    this.ticksFor = '';
  }

  reset() {
    this.stop();
    this.stopSlow();
    this.ticksFor = '';
    this.ticks.replaceChildren();
  }

  update(state) {
    const n = state.index.length;
    setHidden(this.root, !state.runId);
    setProp(this.slider, 'max', String(Math.max(0, n - 1)));
    setProp(this.slider, 'disabled', n < 2);
    const at = state.position;
    if (document.activeElement !== this.slider || !state.playing) setProp(this.slider, 'value', String(Math.max(0, at)));
    const live = state.cursor === null;
    setAttr(this.liveButton, 'aria-pressed', String(live));
    setProp(this.liveButton, 'disabled', live);
    setText(this.liveButton, state.isLive ? 'Live' : 'Last');
    setText(this.playButton, state.playing || state.slow ? '❚❚ Pause' : '▶ Play');
    setProp(this.playButton, 'disabled', n < 2);
    this.drawTicks(state.index);
    setProp(this.slowBox, 'checked', state.slowStart);
    if (state.slow && !this.slowOn) this.startSlow();
    else if (!state.slow && this.slowOn) this.stopSlow();
    const ref = state.index[at];
    const shown = state.snapshot;
    const waiting = state.cursor !== null && shown && shown.seq !== state.cursor;
    let text = 'no snapshot yet';
    if (ref) {
      const epoch = ref.epoch_end ? `end of epoch ${ref.epoch}` : `epoch ${ref.epoch + 1}`;
      const where = live ? (state.isLive ? ' · live' : ' · the last moment')
        : state.slow ? ` · ${this.slowText(at)}` : state.playing ? ' · replaying' : '';
      text = `step ${ref.step} · ${epoch} · snapshot ${at + 1} of ${n}${where}${waiting ? ' · loading…' : ''}`;
    }
    setText(this.label, text);
    setAttr(this.label, 'data-step', ref ? String(ref.step) : '');
  }

  /** Epoch ends as marks under the slider, where they fall among the snapshots; numbered every 1, 2, 5, 10...
   * epochs, as often as their labels fit side by side (a 60-epoch run's 60 numbers would overlap). */
  drawTicks(index) {
    const ends = [];
    index.forEach((r, i) => { if (r.epoch_end) ends.push([r, i]); });
    const width = this.ticksWidth;
    const key = `${index.length}:${ends.length}:${width}`;
    if (key === this.ticksFor) return;
    this.ticksFor = key;
    const n = Math.max(1, index.length - 1);
    const gap = MIN_LABEL_PX * String(ends.at(-1)?.[0].epoch ?? 1).length; // px from one number's centre to the next
    const room = width / Math.max(1, ends.length); // px per epoch, if they fall evenly
    const every = LABEL_EVERY.find((k) => k * room >= gap) ?? LABEL_EVERY.at(-1);
    // One mark per epoch end, made once and moved as the run's snapshots grow (new ones only as epochs end).
    while (this.ticks.children.length > ends.length) this.ticks.lastChild.remove();
    while (this.ticks.children.length < ends.length) {
      const mark = document.createElement('span');
      mark.className = 'tick';
      this.ticks.append(mark);
    }
    let last = -Infinity; // where the last number went: one that would touch it is left out
    ends.forEach(([r, i], k) => {
      const mark = this.ticks.children[k];
      setStyle(mark, 'left', `${(100 * i) / n}%`);
      setProp(mark, 'title', `end of epoch ${r.epoch} (step ${r.step})`);
      const x = (width * i) / n;
      const numbered = (r.epoch % every === 0 || every === 1) && x - last >= gap;
      if (numbered) last = x;
      setText(mark, numbered ? String(r.epoch) : '');
    });
  }

  seekIndex(i, byHand) {
    const { index } = this.store;
    if (!index.length) return;
    const at = Math.max(0, Math.min(index.length - 1, i));
    if (byHand) {
      this.stop();
      this.store.endSlow(); // the person looks where they want
    }
    this.session.seek(at === index.length - 1 && byHand && this.store.isLive ? null : index[at].seq);
  }

  stepBy(delta) {
    this.seekIndex(this.store.position + delta, true);
  }

  goLive() {
    this.stop();
    this.store.endSlow();
    this.session.seek(null);
  }

  togglePlay() {
    if (this.store.slow) this.store.endSlow(); // pause the slow start at the moment shown
    else if (this.store.playing) this.stop();
    else this.play();
  }

  /** The moments the slow start will show: step 0 and the cadence's steps up to SLOW_UNTIL_STEP (recorder.py's
   * is_snapshot_step; epoch ends within them come on top), or fewer for a run shorter than that. */
  slowMoments() {
    const { run } = this.store;
    const every = run?.config?.snapshot_every ?? 20;
    const last = Math.min(SLOW_UNTIL_STEP, run?.total_steps ?? SLOW_UNTIL_STEP);
    let n = 1;
    for (let s = 1; s <= last; s++) if (s <= 10 || s % 5 === 0 || s % every === 0) n += 1;
    return n;
  }

  slowBeatMs() {
    const [fast, slow] = SLOW_BEAT_MS;
    return Math.min(slow, Math.max(fast, SLOW_MS / this.slowMoments()));
  }

  /** '… the first 100 steps at 1/5 speed · live in 2 s': how much slower than training, and how long still. */
  slowText(at) {
    const { head, slow } = this.store;
    const left = Math.max(0, this.slowMoments() - (at + 1));
    const seconds = Math.ceil((left * this.slowBeatMs()) / 1000);
    let pace = 'slowed down';
    if (head && head.step >= 20 && head.elapsed > 0) { // training's pace so far, against the page's
      const trained = (slow.until * head.elapsed) / head.step;
      const factor = (this.slowMoments() * this.slowBeatMs()) / 1000 / trained;
      if (factor >= 1.5) pace = `at 1/${Math.round(factor)} speed`;
    }
    return `the first ${slow.until} steps ${pace} · live in ${seconds} s`;
  }

  startSlow() {
    this.slowOn = true; // one beat at a time: what the beat itself causes must not start a second one
    this.slowNextAt = performance.now();
    this.scheduleSlow();
  }

  stopSlow() {
    this.slowOn = false;
    clearTimeout(this.slowTimer);
    this.slowTimer = null;
  }

  scheduleSlow() {
    this.slowNextAt += this.slowBeatMs();
    this.slowTimer = setTimeout(() => this.slowBeat(), Math.max(0, this.slowNextAt - performance.now()));
  }

  /** One stored moment further: the next seq (seqs count the stored snapshots, so none is skipped), once the one
   * wanted is shown; past the dense start, or caught up with a run that no longer trains, live. */
  slowBeat() {
    const { store, session } = this;
    this.slowTimer = null;
    if (!store.slow) {
      this.slowOn = false;
      return;
    }
    const wanted = store.cursor;
    const known = (seq) => store.index.find((r) => r.seq === seq);
    if (store.snapshot?.seq !== wanted) { // its frame has not come: wait, fetching it once the list names it
      if (known(wanted)) session.fetchFrame(wanted, true);
      this.slowNextAt = performance.now();
    } else {
      const next = known(wanted + 1);
      const training = store.status === 'running' || store.status === 'queued';
      if (next && next.step <= store.slow.until) {
        session.seek(next.seq);
      } else if (next || (!training && (store.head?.seq ?? -1) <= wanted)) {
        store.endSlow(); // the start has been shown (or the run stopped within it): follow the run
        session.seek(null);
        return;
      } else if ((store.head?.seq ?? -1) > wanted) {
        session.refreshIndex(store.runId); // the socket skipped it: the list brings it
      }
    }
    this.scheduleSlow();
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
    } else if (e.key === ' ' && (this.store.lookingBack || !this.store.isLive)) {
      if (e.target.closest?.('button')) return;
      // Looking back: space plays. Following live training, the slow start's included, it pauses training
      // (controls), as the Pause button's hint says: the pause then shows the moment training stopped at.
      e.preventDefault();
      this.togglePlay();
    }
  }
}
