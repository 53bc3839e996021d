/**
 * The run statuses as the server lists them (the boot data's `statuses`, from training/events.py): the page's
 * one list of them, so that a status the server adds needs no edit here.
 */

const boot = JSON.parse(globalThis.document?.getElementById('boot')?.textContent ?? '{}');

/** [{name, final, ended}] in the server's order. */
export const STATUSES = Object.freeze(boot.statuses ?? []);
const BY_NAME = new Map(STATUSES.map((s) => [s.name, s]));

/** True when the run will never train again (stopped, finished, diverged, failed). */
export function isFinal(status) { return BY_NAME.get(status)?.final ?? false; }

/** True when nothing trains it: final, or interrupted until its owner resumes it. */
export function isEnded(status) { return BY_NAME.get(status)?.ended ?? false; }

/** True while the run is under way (queued, running or paused): a known status that has not ended. */
export function isLive(status) { return BY_NAME.has(status) && !isEnded(status); }
