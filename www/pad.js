// The drawing pad: an image and a mask at the model's resolution, shown enlarged. Pointer and
// touch strokes (Pointer Events cover both) paint white strokes into the image or the hole to
// fill into the mask; Clear, Undo, an image file dropped or chosen, or the last sample fill it.
// The model reads it as values in −1 … 1 (`image()`) and RePaint's mask (`mask()`: 1 keeps).

const UNDO_DEPTH = 30;

export class Pad {
  constructor(view) {
    this.view = view;
    this.size = 28;
    this.channels = 1;
    this.target = 'image'; // what strokes paint: 'image' or 'mask'
    this.brush = 1.5;      // radius in model pixels
    this.touched = false;  // drawn on, dropped or filled: the first sample no longer replaces it
    this.undoStack = [];
    this.onChange = () => {};
    this.#layers(28);
    this.#listen();
  }

  #layers(size) {
    const layer = () => {
      const c = document.createElement('canvas');
      c.width = c.height = size;
      return c;
    };
    this.img = layer();
    this.msk = layer();
    const g = this.img.getContext('2d', { willReadFrequently: true });
    g.fillStyle = '#000';
    g.fillRect(0, 0, size, size);
  }

  /** Matches the model: a new size clears the pad. */
  setModel(size, channels) {
    this.channels = channels;
    if (size !== this.size) {
      this.size = size;
      this.#layers(size);
      this.undoStack = [];
      this.touched = false;
    }
    this.draw();
  }

  #snapshot() {
    const get = (c) => c.getContext('2d', { willReadFrequently: true }).getImageData(0, 0, this.size, this.size);
    this.undoStack.push({ img: get(this.img), msk: get(this.msk) });
    if (this.undoStack.length > UNDO_DEPTH) this.undoStack.shift();
  }

  undo() {
    const s = this.undoStack.pop();
    if (!s) return;
    this.img.getContext('2d').putImageData(s.img, 0, 0);
    this.msk.getContext('2d').putImageData(s.msk, 0, 0);
    this.draw();
  }

  /** Clears what strokes paint now: the image to black, or the mask to nothing. */
  clear() {
    this.#snapshot();
    const g = this.target === 'mask' ? this.msk.getContext('2d') : this.img.getContext('2d');
    if (this.target === 'mask') g.clearRect(0, 0, this.size, this.size);
    else { g.fillStyle = '#000'; g.fillRect(0, 0, this.size, this.size); }
    this.touched = true;
    this.draw();
  }

  /** Item `item` of [N, C, H, W] values in −1 … 1 (a sample) into the image layer. */
  setValues(values, item = 0) {
    const s = this.size, c = this.channels, plane = s * s;
    if (!values || values.length < (item + 1) * c * plane) return;
    this.#snapshot();
    const px = new ImageData(s, s);
    const byte = (v) => Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
    for (let i = 0; i < plane; i++) {
      const at = item * c * plane + i;
      const r = byte(values[at]);
      px.data.set(c >= 3 ? [r, byte(values[at + plane]), byte(values[at + 2 * plane]), 255] : [r, r, r, 255], i * 4);
    }
    this.img.getContext('2d').putImageData(px, 0, 0);
    this.draw();
  }

  /** An image (File, Blob) drawn into the image layer, scaled to the model's size. */
  async setImageFile(file) {
    const bitmap = await createImageBitmap(file);
    this.#snapshot();
    const g = this.img.getContext('2d');
    g.fillStyle = '#000';
    g.fillRect(0, 0, this.size, this.size);
    g.drawImage(bitmap, 0, 0, this.size, this.size);
    this.touched = true;
    this.draw();
    this.onChange();
  }

  /** The image as [1, C, H, W] values in −1 … 1 (grey from the red channel for one channel). */
  image() {
    const d = this.img.getContext('2d', { willReadFrequently: true }).getImageData(0, 0, this.size, this.size).data;
    const plane = this.size * this.size;
    const out = new Float32Array(this.channels * plane);
    for (let ch = 0; ch < this.channels; ch++) {
      for (let i = 0; i < plane; i++) out[ch * plane + i] = (d[i * 4 + Math.min(ch, 2)] / 255) * 2 - 1;
    }
    return out;
  }

  /** RePaint's mask, [1, 1, H, W]: 1 keeps the image, 0 (painted) is filled. */
  mask() {
    const d = this.msk.getContext('2d', { willReadFrequently: true }).getImageData(0, 0, this.size, this.size).data;
    const out = new Float32Array(this.size * this.size);
    for (let i = 0; i < out.length; i++) out[i] = d[i * 4 + 3] >= 128 ? 0 : 1;
    return out;
  }

  /** Pixels painted into the mask. */
  holeSize() { return this.mask().reduce((n, v) => n + (v === 0), 0); }

  draw() {
    const g = this.view.getContext('2d');
    g.imageSmoothingEnabled = false;
    g.drawImage(this.img, 0, 0, this.view.width, this.view.height);
    g.globalAlpha = 0.55;
    g.drawImage(this.msk, 0, 0, this.view.width, this.view.height);
    g.globalAlpha = 1;
  }

  #stroke(from, to) {
    const g = (this.target === 'mask' ? this.msk : this.img).getContext('2d');
    g.strokeStyle = g.fillStyle = this.target === 'mask' ? '#f33' : '#fff';
    g.lineWidth = 2 * this.brush;
    g.lineCap = 'round';
    g.beginPath();
    g.moveTo(from.x, from.y);
    g.lineTo(to.x, to.y);
    g.stroke();
    this.draw();
  }

  #listen() {
    let last = null;
    const at = (e) => {
      const r = this.view.getBoundingClientRect();
      return { x: ((e.clientX - r.left) / r.width) * this.size, y: ((e.clientY - r.top) / r.height) * this.size };
    };
    this.view.addEventListener('pointerdown', (e) => {
      e.preventDefault();
      this.view.setPointerCapture?.(e.pointerId);
      this.#snapshot();
      last = at(e);
      this.#stroke(last, last);
      this.touched = true;
    });
    this.view.addEventListener('pointermove', (e) => {
      if (!last) return;
      const p = at(e);
      this.#stroke(last, p);
      last = p;
    });
    const end = () => { if (last) { last = null; this.onChange(); } };
    this.view.addEventListener('pointerup', end);
    this.view.addEventListener('pointercancel', end);
    this.view.addEventListener('dragover', (e) => e.preventDefault());
    this.view.addEventListener('drop', (e) => {
      e.preventDefault();
      const file = [...(e.dataTransfer?.files ?? [])].find((f) => f.type.startsWith('image/'));
      if (file) this.setImageFile(file).catch((err) => this.onError?.(err));
    });
  }
}
