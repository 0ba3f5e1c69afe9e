// <ddim-sampler>: the whole product as one element. Attributes (all optional): model (folder URL
// or hf:owner/name[@revision]; the bundled model by default), hub-endpoint (a Hub mirror for hf:
// ids instead of https://huggingface.co), engine (auto | webgpu | cpu), steps, eta, seed, batch, label,
// guidance, sampler (a name of modelInfo.samplers, e.g. ddim, dpm++2m, pndm, or a diffusers class name; the
// model's own scheduler by default), view (xt | x0 | eps | eps_cond | eps_uncond | guidance: the predicted noise and guidance's parts on a signed
// blue–white–red map; classifier: classifier guidance's term), views (several of those side by side, e.g.
// views="xt,eps,x0,guidance"), arrays (views whose values each frame event carries: arrays="eps,x0" gives
// frame.detail.eps and frame.detail.x0, Float32Arrays [N, C, H, W]), classifier-scale (classifier guidance's s: a
// noise-aware classifier steers the run), classifier-class (the class it steers towards), classifier (its folder
// URL; the bundled digit classifier by default), autoplay. Methods: start(), stop().
// Events: load {modelInfo, engine, reason, adapter, thread, threadReason}, progress {loaded, total, fromCache},
// frame {step, total, timestep, phase, ms, and the arrays asked for}, done {ms, steps}, error {message}. CSS parts: canvas,
// progress, bar, status. Removing the element stops its run and frees its GPU device or workers.
// Test hook (not public API): `element[Symbol.for('ddim-webgpu.loseDeviceForTest')]()` (sampler.js).
import { createSampler, DEFAULT_CLASSIFIER, DEFAULT_MODEL, loseDeviceForTest } from './sampler.js';

/** @typedef {import('./index.js').DdimSamplerEventMap} DdimSamplerEventMap */
/** @typedef {import('./index.js').RunOptions} RunOptions */

/** @type {(keyof RunOptions)[]} */
const RUN_ATTRS = ['steps', 'eta', 'seed', 'batch', 'label', 'guidance', 'sampler', 'view', 'views', 'arrays'];
/** @type {Set<keyof RunOptions>} */
const NUMERIC = new Set(['steps', 'eta', 'seed', 'batch', 'label', 'guidance']);

const STYLE = `
:host { display: inline-block; width: 256px; position: relative; contain: content; }
:host([hidden]) { display: none; }
canvas { display: block; width: 100%; height: auto; image-rendering: pixelated; background: #000; }
[part=progress] { height: 3px; background: rgba(127,127,127,.25); }
[part=bar] { height: 100%; width: 0; background: currentColor; transition: width .1s linear; }
[part=status] { font: 12px/1.3 system-ui, sans-serif; min-height: 1.3em; opacity: .75; overflow-wrap: anywhere; }
`;

export class DdimSamplerElement extends HTMLElement {
  static observedAttributes = ['model', 'engine', 'hub-endpoint'];
  /** @type {import('./sampler.js').Sampler | null} */
  #sampler = null;
  #samplerKey = '';
  /** The sampler and URL the classifier was last loaded for. @type {import('./sampler.js').Sampler | null} */
  #classifierFor = null;
  #classifierUrl = '';
  /** @type {AbortController | null} */
  #abort = null;
  /** @type {Promise<void> | null} */
  #run = null;
  #connected = false;

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    // Built with DOM calls and a constructed style sheet, so pages with a strict
    // Content-Security-Policy (no inline styles, no innerHTML) can host the element.
    if ('adoptedStyleSheets' in root && typeof CSSStyleSheet.prototype.replaceSync === 'function') {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLE);
      root.adoptedStyleSheets = [sheet];
    } else {
      root.append(Object.assign(document.createElement('style'), { textContent: STYLE }));
    }
    /** @type {(tag: string, name: string, attrs?: Record<string, string>) => HTMLElement} */
    const part = (tag, name, attrs = {}) => {
      const el = document.createElement(tag);
      el.setAttribute('part', name);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
      return el;
    };
    const progress = part('div', 'progress');
    progress.append(part('div', 'bar'));
    root.append(part('canvas', 'canvas', { width: '56', height: '56' }), progress, part('div', 'status', { 'aria-live': 'polite' }));
  }

  /** The Sampler in use (null before the first start), for programmatic access. */
  get sampler() { return this.#sampler; }

  connectedCallback() {
    this.#connected = true;
    if (this.hasAttribute('autoplay')) queueMicrotask(() => this.#connected && this.start().catch(() => {}));
  }

  disconnectedCallback() {
    this.#connected = false;
    // Moved within the document: connectedCallback follows at once; only free when really removed.
    queueMicrotask(() => { if (!this.#connected) this.#free(); });
  }

  attributeChangedCallback() {
    // A new model, Hub endpoint or engine needs a new sampler at the next start.
    if (this.#sampler && this.#key() !== this.#samplerKey) this.stop();
  }

  #key() { return `${this.getAttribute('engine') || 'auto'}|${this.getAttribute('model') || 'bundled'}|${this.getAttribute('hub-endpoint') || ''}`; }

  /** A part of the shadow DOM (built by the constructor). @param {string} name */
  #part(name) { return /** @type {HTMLElement} */ (/** @type {ShadowRoot} */ (this.shadowRoot).querySelector(`[part=${name}]`)); }
  /** @param {string} text */
  #status(text) { this.#part('status').textContent = text; }
  /** @param {number} fraction */
  #bar(fraction) { this.#part('bar').style.width = `${Math.round(fraction * 100)}%`; }
  /**
   * @template {keyof DdimSamplerEventMap} K
   * @param {K} type
   * @param {DdimSamplerEventMap[K]['detail']} detail
   */
  #emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  // Removed from the document: end the run and free the engine.
  #free() {
    this.#abort?.abort();
    this.#dropSampler();
  }

  #dropSampler() {
    this.#sampler?.destroy();
    this.#sampler = null;
    this.#samplerKey = '';
  }

  // A canvas keeps the first context it is given, so each sampler gets a fresh one.
  #freshCanvas() {
    const old = /** @type {HTMLCanvasElement} */ (/** @type {ShadowRoot} */ (this.shadowRoot).querySelector('canvas'));
    const c = document.createElement('canvas');
    c.setAttribute('part', 'canvas');
    c.width = old.width; c.height = old.height;
    old.replaceWith(c);
    return c;
  }

  /** Loads the classifier the attributes ask for (once per sampler and URL), where classifier-scale > 0. */
  async #ensureClassifier(/** @type {import('./sampler.js').Sampler} */ sampler) {
    if (!(Number(this.getAttribute('classifier-scale')) > 0)) return;
    const url = this.getAttribute('classifier') || '';
    if (this.#classifierFor === sampler && this.#classifierUrl === url) return;
    this.#status('loading the classifier…');
    await sampler.loadClassifier(url || DEFAULT_CLASSIFIER);
    this.#classifierFor = sampler;
    this.#classifierUrl = url;
  }

  async #ensureSampler() {
    const key = this.#key();
    if (this.#sampler && this.#samplerKey === key) return this.#sampler;
    this.#dropSampler();
    this.#status('loading the model…');
    const sampler = await createSampler({
      canvas: this.#freshCanvas(),
      model: this.getAttribute('model') || DEFAULT_MODEL,
      hubEndpoint: this.getAttribute('hub-endpoint') || undefined,
      engine: /** @type {import('./index.js').EngineRequest} */ (this.getAttribute('engine') || 'auto'), // chooseEngine checks it
      onProgress: (p) => { if (p.total) this.#bar(p.loaded / p.total); this.#emit('progress', p); },
    });
    if (!this.#connected) { sampler.destroy(); throw new DOMException('the element was removed', 'AbortError'); }
    this.#sampler = sampler;
    this.#samplerKey = key;
    this.#emit('load', { modelInfo: sampler.modelInfo, engine: sampler.engine, reason: sampler.reason, adapter: sampler.adapter, thread: sampler.thread, threadReason: sampler.threadReason });
    return sampler;
  }

  /** The run options the attributes give. @param {import('./sampler.js').Sampler} sampler */
  #options(sampler) {
    /** @type {Record<string, string | number>} */
    const o = {};
    for (const a of RUN_ATTRS) {
      const v = this.getAttribute(a);
      if (v === null || v === '') continue;
      o[a] = NUMERIC.has(a) ? Number(v) : v;
    }
    for (const [attr, key] of [['classifier-scale', 'classifierScale'], ['classifier-class', 'classifierClass']]) {
      const v = this.getAttribute(attr);
      if (v !== null && v !== '') o[key] = Number(v);
    }
    // Classifier-free guidance needs a class-conditional model.
    if (!sampler.modelInfo.numClassEmbeds) delete o.guidance;
    return /** @type {RunOptions} */ (o);
  }

  /** Starts a run (stopping one in progress); resolves when it ends. Errors fire `error` too. */
  async start() {
    await this.stop();
    const abort = new AbortController();
    this.#abort = abort;
    const run = (async () => {
      const t0 = performance.now();
      let steps = 0;
      try {
        const sampler = await this.#ensureSampler();
        await this.#ensureClassifier(sampler);
        abort.signal.throwIfAborted();
        this.#status(sampler.engine === 'webgpu' ? `WebGPU: ${sampler.adapter}` : sampler.adapter);
        for await (const f of sampler.run({ ...this.#options(sampler), signal: abort.signal })) {
          steps = f.step;
          this.#bar(f.step / f.total);
          this.#emit('frame', f);
        }
        this.#emit('done', { ms: performance.now() - t0, steps });
      } catch (e) {
        const err = /** @type {any} */ (e);
        if (err?.name === 'AbortError' || abort.signal.aborted) return;
        this.#status(`Error: ${err?.message ?? err}`);
        this.#emit('error', { message: String(err?.message ?? err) });
        throw e;
      }
    })();
    this.#run = run;
    try { await run; } finally { if (this.#run === run) this.#run = null; }
  }

  /** The test hook (not public API; see `loseDeviceForTest` in sampler.js): loses the WebGPU device mid-run. */
  [loseDeviceForTest]() { return this.#sampler?.[loseDeviceForTest]() ?? false; }

  /** Ends the run in progress within one step; resolves once it has stopped. */
  async stop() {
    this.#abort?.abort();
    this.#abort = null;
    await this.#run?.catch(() => {});
  }
}

if (globalThis.customElements && !customElements.get('ddim-sampler')) customElements.define('ddim-sampler', DdimSamplerElement);
