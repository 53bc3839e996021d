/** Moving averages of noisy per-batch curves (loss, update ratios), one step at a time or over a whole series. */

/**
 * The exponential moving average after `prev` takes in `v` (weight `alpha` on the past); a missing or
 * non-finite `v` (or, with `log`, one not above zero) leaves it as it was. `log`: averaged in log space, for
 * values spread over decades.
 */
export function ema(prev, v, alpha, log = false) {
  const ok = v !== null && v !== undefined && Number.isFinite(v) && (!log || v > 0);
  if (!ok) return prev;
  if (prev === null) return v;
  return log ? Math.exp(alpha * Math.log(prev) + (1 - alpha) * Math.log(v)) : alpha * prev + (1 - alpha) * v;
}

/** `ema` over a whole series: one smoothed value per entry (null until the first usable one). */
export function smooth(values, alpha, log = false) {
  const out = new Array(values.length);
  let prev = null;
  for (let i = 0; i < values.length; i++) out[i] = prev = ema(prev, values[i], alpha, log);
  return out;
}
