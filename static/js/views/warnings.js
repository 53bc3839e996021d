import { setHidden } from '../dom.js';
/** The run's warnings (it died, stalled at chance, or its loss explodes), where a person is looking: under the
 * header, above every panel, each with the step it was raised at; a click on the step takes the timeline there. */

const TITLES = { dead: 'The network has died', stalled: 'Learning has stalled', exploding: 'The loss is exploding' };

export class WarningsView {
  constructor(container, { store, session }) {
    this.root = container;
    this.store = store;
    this.session = session;
    this.reset();
  }

  reset() {
    this.shown = '';
    this.root.replaceChildren();
    setHidden(this.root, true);
  }

  update(state) {
    const key = state.warnings.map((w) => w.kind).join();
    if (key === this.shown) return;
    this.shown = key;
    this.root.replaceChildren(...state.warnings.map((w) => this.item(w)));
    setHidden(this.root, !state.warnings.length);
  }

  item(w) {
    const p = document.createElement('p');
    p.className = 'warning';
    p.dataset.kind = w.kind;
    p.dataset.testid = `warning-${w.kind}`;
    const title = document.createElement('strong');
    title.textContent = `⚠ ${TITLES[w.kind] ?? w.kind}`;
    const at = document.createElement('button');
    at.type = 'button';
    at.className = 'link';
    at.textContent = `at step ${w.step}`;
    at.title = 'Show the network at this moment';
    at.addEventListener('click', () => {
      const ref = this.store.refAtStep(w.step);
      if (ref) this.session.look(ref.seq);
    });
    p.append(title, ' ', at, `: ${w.message}`);
    return p;
  }
}
