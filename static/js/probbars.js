/** Class probabilities as horizontal bars: the prediction highlighted, the true class marked. */

import { setProp, setStyle, setText } from './dom.js';

export class ProbBars {
  constructor(container) {
    this.root = document.createElement('ol');
    this.root.className = 'probbars';
    this.root.dataset.testid = 'probbars';
    container.append(this.root);
    this.rows = [];
  }

  reset() {
    this.root.replaceChildren();
    this.rows = [];
  }

  /** probs: numbers in [0, 1], classes: names; label: index of the true class or null. */
  update(probs, classes, label = null) {
    if (this.rows.length !== probs.length) {
      this.reset();
      this.rows = Array.from(probs, (_, i) => {
        const li = document.createElement('li');
        const name = document.createElement('span');
        name.className = 'name';
        name.textContent = classes?.[i] ?? String(i);
        name.title = name.textContent;
        const track = document.createElement('span');
        track.className = 'track';
        const bar = document.createElement('span');
        bar.className = 'bar';
        track.append(bar);
        const value = document.createElement('span');
        value.className = 'value';
        li.append(name, track, value);
        this.root.append(li);
        return { li, bar, value };
      });
    }
    let best = 0;
    for (let i = 1; i < probs.length; i++) if (probs[i] > probs[best]) best = i;
    this.rows.forEach((row, i) => {
      const p = probs[i];
      setStyle(row.bar, 'width', `${(100 * p).toFixed(1)}%`);
      setText(row.value, p >= 0.995 ? '100%' : p < 0.001 ? '0%' : `${(100 * p).toFixed(p < 0.1 ? 1 : 0)}%`);
      row.li.classList.toggle('best', i === best); // a no-op when it holds already
      row.li.classList.toggle('truth', i === label);
      setProp(row.li, 'title', i === label ? 'the true class' : '');
    });
  }
}
