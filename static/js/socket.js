/** The run's WebSocket: decodes messages, reconnects with backoff, and says what state it is in. */

import { decodeFrame } from './codec.js';

const GONE = 4404; // unknown run: do not retry
const REMOVED = 4410; // the run was deleted, or removed to keep the disk budget
const TOO_SLOW = 4408; // the server dropped us for lagging: reconnect at once and catch up

export class RunSocket {
  /**
   * handlers: onMessage(msg) for text messages (parsed), onSnapshot(frame) for decoded binary frames,
   * onState(state, detail) with state 'connecting' | 'live' | 'reconnecting' | 'gone' | 'closed',
   * isFinal() telling whether the run has ended (a closed socket is then not reopened).
   */
  constructor(runId, handlers) {
    this.runId = runId;
    this.h = handlers;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.closed = false;
  }

  url() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${location.host}/ws/runs/${encodeURIComponent(this.runId)}`;
  }

  connect() {
    this.h.onState(this.attempt ? 'reconnecting' : 'connecting', 'connecting…');
    const ws = new WebSocket(this.url());
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onmessage = (e) => {
      if (typeof e.data === 'string') {
        const msg = JSON.parse(e.data);
        if (msg.type === 'hello') {
          this.attempt = 0;
          this.h.onState('live', '');
        }
        this.h.onMessage(msg);
      } else {
        this.h.onSnapshot(decodeFrame(e.data));
      }
    };
    ws.onclose = (e) => this.onClose(e);
  }

  onClose(e) {
    this.ws = null;
    if (this.closed) return;
    if (e.code === GONE || e.code === REMOVED) {
      this.h.onState('gone', e.reason || 'This run is not known to the server.');
      return;
    }
    if (this.h.isFinal() && e.code !== TOO_SLOW) {
      this.h.onState('closed', '');
      return;
    }
    // 0.5 s, 1 s, 2 s ... up to 10 s, with jitter so many tabs do not reconnect in step.
    const delay = e.code === TOO_SLOW ? 0 : Math.min(10000, 500 * 2 ** this.attempt) * (0.8 + 0.4 * Math.random());
    this.attempt += 1;
    this.h.onState('reconnecting', `connection lost; retrying in ${Math.round(delay / 1000)} s`);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }
}
