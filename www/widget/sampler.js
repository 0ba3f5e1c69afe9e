// The package's JS API: createSampler() picks the engine (so every embedder gets the same choice
// and reasons), loads a diffusers model folder with progress and Cache Storage, and wraps the wasm
// DiffusionSampler in a small object whose run() is an async iterator of frames.
import init, { DiffusionSampler, setWorkerFactory } from './ddim_webgpu.js';

/**
 * The bundled model (MNIST digits, class-conditional), shipped beside this module. One URL per
 * file, each written as `new URL('literal', import.meta.url)` so bundlers emit them as assets.
 */
export const DEFAULT_MODEL = Object.freeze({
  config: new URL('./model/config.json', import.meta.url).href,
  weights: new URL('./model/diffusion_pytorch_model.safetensors', import.meta.url).href,
  scheduler: new URL('./model/scheduler_config.json', import.meta.url).href,
});
const CACHE = 'ddim-webgpu-models-v1';
const live = new Set(); // samplers not yet destroyed (liveStats)

let wasmReady = null;
/** Loads the wasm module once (resolved relative to this file, so bundlers and CDNs both work). */
export function ready() {
  wasmReady ??= init({ module_or_path: new URL('./ddim_webgpu_bg.wasm', import.meta.url) }).then((wasm) => {
    // Written out literally so bundlers find and bundle the worker (and its wasm).
    setWorkerFactory(() => new Worker(new URL('./cpu-worker.js', import.meta.url), { type: 'module' }));
    return wasm;
  });
  return wasmReady;
}

/**
 * Which engine runs. auto: WebGPU on a real adapter; the CPU engine (Rust in wasm, in Web Workers)
 * when there is no WebGPU, no adapter, or only a fallback (software) adapter, where wasm is much
 * faster. An explicit "webgpu" that cannot be met is an error that says why.
 */
export async function chooseEngine(requested = 'auto') {
  if (requested === 'cpu' || requested.startsWith('cpu:')) return { engine: requested, reason: 'CPU engine requested.' };
  if (requested !== 'auto' && requested !== 'webgpu') throw new Error(`engine "${requested}": expected auto, webgpu or cpu`);
  const unavailable = (why) => {
    if (requested === 'webgpu') throw new Error(`WebGPU was requested, but ${why}. Choose the CPU or auto engine.`);
    return { engine: 'cpu', reason: `${why[0].toUpperCase()}${why.slice(1)}, so the CPU engine (Rust compiled to wasm) runs instead.` };
  };
  if (!globalThis.navigator?.gpu) return unavailable('this browser has no WebGPU (navigator.gpu is missing)');
  let adapter = null, failure = '';
  try { adapter = await navigator.gpu.requestAdapter(); } catch (e) { failure = `: ${e.message || e}`; }
  if (!adapter) return unavailable(`WebGPU offers no adapter here (requestAdapter gave none${failure})`);
  const info = adapter.info || {};
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown adapter';
  if (requested === 'webgpu') {
    return { engine: 'webgpu', reason: info.isFallbackAdapter ? `WebGPU requested on a fallback adapter (${name}, a CPU emulation): expect it to be slow.` : `WebGPU requested (${name}).` };
  }
  if (info.isFallbackAdapter) {
    return { engine: 'cpu', reason: `Only a fallback WebGPU adapter is available (${name}, a CPU emulation); the CPU engine is much faster here.` };
  }
  return { engine: 'webgpu', reason: `WebGPU on ${name}.` };
}

async function fetchOk(url, init) {
  let resp;
  try { resp = await fetch(url, init); } catch (e) { throw new Error(`${url}: fetch failed (${e.message || e})`); }
  if (!resp.ok && resp.status !== 404) throw new Error(`${url}: HTTP ${resp.status} ${resp.statusText}`);
  return resp;
}

// What identifies a version of a file without downloading it.
const versionOf = (h) => [h.get('etag'), h.get('last-modified'), h.get('content-length')].join('|');

/**
 * The bytes at `url`, streamed with progress. With Cache Storage, a cached copy is revalidated by
 * one HEAD request (ETag / Last-Modified / length) and read from the cache when unchanged; a
 * changed file is downloaded again. Offline, the cached copy is used.
 */
async function fetchWeights(url, onProgress, useCache) {
  const cache = useCache && globalThis.caches ? await caches.open(CACHE).catch(() => null) : null;
  const cached = cache ? await cache.match(url) : undefined;
  if (cached) {
    const head = await fetch(url, { method: 'HEAD', cache: 'no-store' }).catch(() => null);
    if (!head || !head.ok || versionOf(head.headers) === cached.headers.get('x-ddim-version')) {
      const bytes = new Uint8Array(await cached.arrayBuffer());
      onProgress?.({ loaded: bytes.length, total: bytes.length, fromCache: true });
      return bytes;
    }
  }
  const resp = await fetchOk(url, { cache: 'no-store' });
  if (resp.status === 404) throw new Error(`${url}: HTTP 404 Not Found`);
  const total = Number(resp.headers.get('content-length')) || 0;
  const chunks = [];
  let loaded = 0;
  const reader = resp.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    onProgress?.({ loaded, total, fromCache: false });
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  if (cache) {
    const headers = { 'content-type': 'application/octet-stream', 'x-ddim-version': versionOf(resp.headers) };
    await cache.put(url, new Response(bytes, { headers })).catch(() => {}); // quota: just do not cache
  }
  return bytes;
}

/** The three file URLs of a model: a folder URL, or {config, weights, scheduler} URLs as is. */
export function modelUrls(model = DEFAULT_MODEL) {
  if (typeof model !== 'string') return model;
  const base = new URL(model.endsWith('/') ? model : `${model}/`, globalThis.location?.href).href;
  return { config: `${base}config.json`, weights: `${base}diffusion_pytorch_model.safetensors`, scheduler: `${base}scheduler_config.json` };
}

/**
 * A diffusers model: config.json, diffusion_pytorch_model.safetensors (fp32 or fp16, kept as
 * stored) and scheduler_config.json (optional: diffusers' defaults when it is absent). `model` is
 * a folder URL or {config, weights, scheduler} URLs.
 */
export async function loadModel(model = DEFAULT_MODEL, { onProgress, cache = true } = {}) {
  const urls = modelUrls(model);
  const text = async (url, required) => {
    const resp = await fetchOk(url, { cache: 'no-store' });
    if (resp.status === 404) {
      if (required) throw new Error(`${url}: HTTP 404 Not Found`);
      return undefined;
    }
    return resp.text();
  };
  const [config, scheduler] = await Promise.all([text(urls.config, true), urls.scheduler ? text(urls.scheduler, false) : undefined]);
  const weights = await fetchWeights(urls.weights, onProgress, cache);
  return { config, weights, scheduler };
}

/** A model bound to a canvas on one engine. Made by createSampler(). */
export class Sampler {
  #inner;
  #running = null;
  #freed = false;
  constructor(inner, { engine, reason }) {
    this.#inner = inner;
    this.engine = engine.startsWith('cpu') ? 'cpu' : 'webgpu';
    this.reason = reason;
    this.adapter = inner.adapter;
    this.modelInfo = inner.modelInfo();
    this.thread = 'main';
    live.add(this);
  }

  /**
   * Samples; yields {step, total, timestep, ms} after each step is drawn. Options: steps, eta,
   * seed, sampler ("ddim" | "ddpm"), batch, label (one class, or one per item), guidance, view
   * ("xt" | "x0"), signal (an AbortSignal: the run ends within one step, throwing an AbortError).
   */
  async *run({ signal, label, ...options } = {}) {
    if (this.#running) throw new Error('a run is already in progress: stop it first');
    signal?.throwIfAborted();
    const frames = [];
    let wake = null, finished = false, failure = null;
    const notify = () => { wake?.(); wake = null; };
    const onAbort = () => this.#inner.cancel();
    signal?.addEventListener('abort', onAbort);
    const opts = { ...options, classLabel: label ?? options.classLabel };
    const run = this.#inner.run(opts, (f) => { frames.push(f); notify(); })
      .then(() => { finished = true; notify(); }, (e) => { failure = e; finished = true; notify(); });
    this.#running = run;
    try {
      for (;;) {
        while (frames.length) yield frames.shift();
        if (finished) break;
        await new Promise((r) => { wake = r; });
      }
      if (failure) {
        if (failure.message === 'cancelled' && signal?.aborted) throw signal.reason ?? new DOMException('aborted', 'AbortError');
        throw failure;
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (!finished) { this.#inner.cancel(); await run; } // the caller left the loop early
      this.#running = null;
    }
  }

  /** Ends the run in progress within one step (run() then throws Error("cancelled")). */
  stop() { this.#inner.cancel(); }

  /** The last finished sample as {width, height, data: RGBA Uint8ClampedArray}, or null. */
  lastImage() { return this.#inner.lastImage(); }

  /** {gpuBuffers, gpuBytes, destroyed}: GPU buffers this sampler holds (0 on the CPU engine). */
  stats() { return this.#freed ? { gpuBuffers: 0, gpuBytes: 0, destroyed: true } : this.#inner.stats(); }

  /** Frees the GPU device (every buffer) or the Web Workers, and the model's memory. */
  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    this.#inner.destroy();
    // A run in progress keeps its own reference until it stops; free the handle after that.
    Promise.resolve(this.#running).catch(() => {}).finally(() => { this.#freed = true; this.#inner.free(); });
  }
}

/** {samplers, gpuBuffers, gpuBytes} over every sampler not yet destroyed (leak checks). */
export function liveStats() {
  let gpuBuffers = 0, gpuBytes = 0;
  for (const s of live) { const st = s.stats(); gpuBuffers += st.gpuBuffers; gpuBytes += st.gpuBytes; }
  return { samplers: live.size, gpuBuffers, gpuBytes };
}

/**
 * createSampler({ canvas, model, engine, files, onProgress }): loads the model (a folder URL, the
 * bundled model by default, or `files` = {config, weights, scheduler} bytes/strings) and builds
 * a Sampler on `canvas` (a fresh canvas: a canvas keeps the first context it is given).
 */
export async function createSampler({ canvas, model = DEFAULT_MODEL, engine = 'auto', files, onProgress, cache = true } = {}) {
  if (!canvas) throw new Error('createSampler needs a canvas');
  await ready();
  const choice = await chooseEngine(engine);
  const m = files ?? await loadModel(model, { onProgress, cache });
  const inner = await DiffusionSampler.create(canvas, m.config, m.weights, m.scheduler, choice.engine);
  return new Sampler(inner, choice);
}
