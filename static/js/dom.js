/**
 * DOM writes that happen only when they change something. A text written again replaces its text node, and
 * an attribute or inline style written again is still a mutation: each makes the browser recalculate style
 * and lay the page out before its next frame. Watching a run, the page wrote the same texts and attributes at
 * every moment (about 2,000 a run in the probability bars alone), and each frame it laid out cost the cores
 * training shares with it (bench/profile_page.py).
 */

/** el.textContent = text, unless it already reads so. */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** el.setAttribute(name, value), unless it already has that value. */
export function setAttr(el, name, value) {
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

/** el.hidden = hidden, unless it already is. */
export function setHidden(el, hidden) {
  if (el.hidden !== hidden) el.hidden = hidden;
}

/** el[name] = value for a property (disabled, title, value, max...), unless it already holds it. */
export function setProp(el, name, value) {
  if (el[name] !== value) el[name] = value;
}

const styles = new WeakMap(); // element -> {property: the value last written}; read back, a style is normalised

/** el.style[property] = value, unless this module wrote that value last. */
export function setStyle(el, property, value) {
  let written = styles.get(el);
  if (!written) styles.set(el, (written = {}));
  if (written[property] === value) return;
  written[property] = value;
  el.style[property] = value;
}
