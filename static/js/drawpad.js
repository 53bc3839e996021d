/** A small canvas to draw a digit on with the mouse (or a pen, or a finger): black ink on white. */

export class DrawPad {
  /** onDone(blob) is called with a PNG of the drawing when a stroke ends. */
  constructor(canvas, onDone) {
    this.canvas = canvas;
    this.onDone = onDone;
    this.ctx = canvas.getContext('2d');
    this.drawing = false;
    this.empty = true;
    canvas.addEventListener('pointerdown', (e) => this.down(e));
    canvas.addEventListener('pointermove', (e) => this.move(e));
    canvas.addEventListener('pointerup', (e) => this.up(e));
    canvas.addEventListener('pointercancel', (e) => this.up(e));
    this.clear();
  }

  clear() {
    const { ctx, canvas } = this;
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    this.empty = true;
  }

  point(e) {
    const r = this.canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * this.canvas.width) / r.width, ((e.clientY - r.top) * this.canvas.height) / r.height];
  }

  down(e) {
    this.drawing = true;
    this.canvas.setPointerCapture?.(e.pointerId);
    this.last = this.point(e);
    this.line(this.last, this.last);
  }

  move(e) {
    if (!this.drawing) return;
    const p = this.point(e);
    this.line(this.last, p);
    this.last = p;
  }

  up() {
    if (!this.drawing) return;
    this.drawing = false;
    this.send();
  }

  line(a, b) {
    const { ctx } = this;
    ctx.strokeStyle = '#000000';
    ctx.lineWidth = this.canvas.width / 11; // about an MNIST stroke once scaled to 28 px
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.beginPath();
    ctx.moveTo(a[0], a[1]);
    ctx.lineTo(b[0], b[1]);
    ctx.stroke();
    this.empty = false;
  }

  /** Hand the drawing over as a PNG file (nothing when the pad is blank). */
  send() {
    if (this.empty) return;
    this.canvas.toBlob((blob) => {
      if (blob) this.onDone(new File([blob], 'drawing.png', { type: 'image/png' }));
    }, 'image/png');
  }
}
