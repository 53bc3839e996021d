/** One line at the top for things that happened elsewhere: training errors, a probe change failing. */

export class NoticeView {
  constructor(container) {
    this.root = container;
    this.timer = null;
    this.root.addEventListener('click', () => this.reset());
    this.reset();
  }

  reset() {
    clearTimeout(this.timer);
    this.root.hidden = true;
    this.root.textContent = '';
  }

  /** {message, kind}: errors stay until clicked, information fades after a few seconds. */
  update(notice) {
    if (!notice?.message) { // nothing to say (a new run was opened)
      this.reset();
      return;
    }
    const { message, kind } = notice;
    clearTimeout(this.timer);
    this.root.textContent = message;
    this.root.dataset.kind = kind;
    this.root.hidden = false;
    this.root.title = 'click to dismiss';
    if (kind !== 'error') this.timer = setTimeout(() => this.reset(), 4000);
  }
}
