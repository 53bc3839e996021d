/** Marks drawn over a uPlot chart in its draw hook: a dashed level with a label, a vertical line at an x, and
 * which step the timeline's moment is. */

/** A dashed horizontal line at `value` of `scale`, labelled at the right end (above it, or `below`); nothing if
 * it is off the chart. */
export function level(u, value, scale, { color = '#64748b', text = '', textColor = color, below = false } = {}) {
  const dpr = devicePixelRatio;
  const y = Math.round(u.valToPos(value, scale, true));
  if (!(y >= u.bbox.top && y <= u.bbox.top + u.bbox.height)) return;
  const { ctx } = u;
  ctx.save();
  ctx.strokeStyle = color;
  ctx.lineWidth = dpr;
  ctx.setLineDash([6 * dpr, 4 * dpr]);
  ctx.beginPath();
  ctx.moveTo(u.bbox.left, y);
  ctx.lineTo(u.bbox.left + u.bbox.width, y);
  ctx.stroke();
  if (text) {
    ctx.fillStyle = textColor;
    ctx.font = `${11 * dpr}px system-ui, sans-serif`;
    ctx.textAlign = 'right';
    ctx.fillText(text, u.bbox.left + u.bbox.width - 4 * dpr, below ? y + 13 * dpr : y - 4 * dpr);
  }
  ctx.restore();
}

/** A vertical line at x = `at` across the plot (width in CSS px, dash in CSS px); returns its canvas x. */
export function vertical(u, at, { color = '#7c3aed', width = 2, dash = [] } = {}) {
  const dpr = devicePixelRatio;
  const x = Math.round(u.valToPos(at, 'x', true));
  const { ctx } = u;
  ctx.save();
  ctx.strokeStyle = color;
  ctx.lineWidth = width * dpr;
  ctx.setLineDash(dash.map((d) => d * dpr));
  ctx.beginPath();
  ctx.moveTo(x, u.bbox.top);
  ctx.lineTo(x, u.bbox.top + u.bbox.height);
  ctx.stroke();
  ctx.restore();
  return x;
}

/** The step a chart marks as the timeline's moment: the snapshot looked back at, or null while following live. */
export function momentStep(state) {
  return state.cursor !== null ? state.snapshot?.step ?? null : null;
}
