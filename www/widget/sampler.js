// The package's JS API: createSampler() picks the engine (so every embedder gets the same choice
// and reasons), loads a diffusers model folder with progress and Cache Storage, and wraps the wasm
// DiffusionSampler in a small object whose run() is an async iterator of frames.
import init, { DiffusionSampler, setThreadsWorkerFactory, setWorkerFactory } from './ddim_webgpu.js';
import { initWasm, wasmModule } from './wasm.js';
import { explainMissingWeights, hubModelUrls, hubStatusMessage, isHubId, resolveHubModel } from './hub.js';

// Types for `npm run typecheck` (tsconfig.json): the public ones are index.d.ts's.
/** @typedef {import('./index.js').ClassifierFiles} ClassifierFiles */
/** @typedef {import('./index.js').ClassifierInfo} ClassifierInfo */
/** @typedef {import('./index.js').ClassifierUrls} ClassifierUrls */
/** @typedef {import('./index.js').CreateSamplerOptions} CreateSamplerOptions */
/** @typedef {import('./index.js').EngineChoice} EngineChoice */
/** @typedef {import('./index.js').EngineName} EngineName */
/** @typedef {import('./index.js').EngineRequest} EngineRequest */
/** @typedef {import('./index.js').FilmFrame} FilmFrame */
/** @typedef {import('./index.js').FrameInfo} FrameInfo */
/** @typedef {import('./index.js').LoadProgress} LoadProgress */
/** @typedef {import('./index.js').ModelFiles} ModelFiles */
/** @typedef {import('./index.js').ModelInfo} ModelInfo */
/** @typedef {import('./index.js').ModelUrls} ModelUrls */
/** @typedef {import('./index.js').RunOptions} RunOptions */
/** @typedef {import('./index.js').RunResult} RunResult */
/** @typedef {import('./index.js').SampleImage} SampleImage */
/** @typedef {import('./index.js').Sampler} SamplerApi */
/** @typedef {import('./index.js').SamplerStats} SamplerStats */
/** @typedef {Omit<RunOptions, 'label' | 'signal'>} RawRunOptions The options DiffusionSampler.run reads (`classLabel` for `label`). */

/**
 * The bundled model (MNIST digits, class-conditional), shipped beside this module. One URL per
 * file, each written as `new URL('literal', import.meta.url)` so bundlers emit them as assets.
 */
export const DEFAULT_MODEL = Object.freeze({
  config: new URL('./model/config.json', import.meta.url).href,
  weights: new URL('./model/diffusion_pytorch_model.safetensors', import.meta.url).href,
  scheduler: new URL('./model/scheduler_config.json', import.meta.url).href,
});
/**
 * The bundled noise-aware digit classifier (classifier guidance: `classifierScale`), shipped
 * beside this module like the model.
 */
export const DEFAULT_CLASSIFIER = Object.freeze({
  config: new URL('./classifier/config.json', import.meta.url).href,
  weights: new URL('./classifier/model.safetensors', import.meta.url).href,
});
const CACHE = 'ddim-webgpu-models-v1';
/** @type {Set<Sampler>} */
const live = new Set(); // samplers not yet destroyed (liveStats)

/** @type {Promise<import('./ddim_webgpu.js').InitOutput> | null} */
let wasmReady = null;
// CPU-engine workers started before the model has loaded (they instantiate the page's module
// meanwhile); the engine's worker factory hands them out first, and createSampler ends any it did not take.
/** @type {Worker[]} */
const spareWorkers = [];
/** @type {WebAssembly.Module | null} */
let pageModule = null; // this thread's compiled wasm module, once compiled: handed to each CPU worker
/** A CPU-engine worker, sent this thread's compiled module (now, or once compiled). */
function newCpuWorker() {
  // Written out literally so bundlers find and bundle the worker (and its wasm).
  const worker = new Worker(new URL('./cpu-worker.js', import.meta.url), { type: 'module' });
  // A browser that cannot send a module (DataCloneError) leaves the worker to load its own.
  const send = (/** @type {WebAssembly.Module} */ module) => { try { worker.postMessage({ type: 'module', module }); } catch { /* the worker loads its own */ } };
  if (pageModule) send(pageModule);
  else wasmModule().then(send, () => {});
  return worker;
}
/** @type {WebAssembly.Memory | null} */
let wasmMemory = null; // this thread's wasm memory (liveStats: heap growth checks)
/** Ends the spare workers the engine did not take. */
function endSpareWorkers() {
  for (let w; (w = spareWorkers.pop());) w.terminate();
}
/** Starts spare CPU-engine workers up to `n` (default: one per core, up to 4). @param {number} [n] */
function startSpareWorkers(n = Math.min(Math.max(navigator.hardwareConcurrency || 1, 1), 4)) {
  if (typeof Worker !== 'function') return;
  while (spareWorkers.length < n) spareWorkers.push(newCpuWorker());
}

/** Loads the wasm module once (resolved relative to this file, so bundlers and CDNs both work). */
export function ready() {
  wasmReady ??= wasmModule().then((module) => { pageModule = module; return initWasm(init, module); }).then((wasm) => {
    wasmMemory = wasm.memory;
    setWorkerFactory(() => spareWorkers.pop() ?? newCpuWorker());
    // Cross-origin isolated pages: the threaded build's worker (written out literally for bundlers).
    setThreadsWorkerFactory(() => new Worker(new URL('./cpu-worker-threads.js', import.meta.url), { type: 'module' }));
    return wasm;
  });
  return wasmReady;
}

/**
 * Which engine runs. auto: WebGPU on a real adapter; the CPU engine (Rust in wasm, in Web Workers)
 * when there is no WebGPU, no adapter, or only a fallback (software) adapter, where wasm is much
 * faster. An explicit "webgpu" that cannot be met is an error that says why.
 * @param {EngineRequest} [requested]
 * @returns {Promise<EngineChoice>}
 */
export async function chooseEngine(requested = 'auto') {
  if (requested === 'cpu' || requested.startsWith('cpu:')) return { engine: requested, reason: 'CPU engine requested.' };
  if (requested !== 'auto' && requested !== 'webgpu') throw new Error(`engine "${requested}": expected auto, webgpu or cpu`);
  const unavailable = (/** @type {string} */ why) => {
    if (requested === 'webgpu') throw new Error(`WebGPU was requested, but ${why}. Choose the CPU or auto engine.`);
    return { engine: 'cpu', reason: `${why[0].toUpperCase()}${why.slice(1)}, so the CPU engine (Rust compiled to wasm) runs instead.` };
  };
  const gpu = globalThis.navigator?.gpu;
  if (!gpu) return unavailable('this browser has no WebGPU (navigator.gpu is missing)');
  // While the adapter answers, CPU workers start (their wasm compiles): most adapters here are
  // software ones, where auto picks the CPU engine. They are ended if WebGPU is picked.
  const spare = requested === 'auto' && !spareWorkers.length;
  if (spare) startSpareWorkers();
  const picked = (/** @type {EngineChoice} */ choice) => {
    if (spare && choice.engine === 'webgpu') endSpareWorkers();
    return choice;
  };
  let adapter = null, failure = '';
  try { adapter = await gpu.requestAdapter(); } catch (e) { failure = `: ${errorMessage(e)}`; }
  if (!adapter) return unavailable(`WebGPU offers no adapter here (requestAdapter gave none${failure})`);
  /** @type {Partial<GPUAdapterInfo>} */
  const info = adapter.info || {};
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown adapter';
  if (requested === 'webgpu') {
    return { engine: 'webgpu', reason: info.isFallbackAdapter ? `WebGPU requested on a fallback adapter (${name}, a CPU emulation): expect it to be slow.` : `WebGPU requested (${name}).` };
  }
  if (info.isFallbackAdapter) {
    return { engine: 'cpu', reason: `Only a fallback WebGPU adapter is available (${name}, a CPU emulation); the CPU engine is much faster here.` };
  }
  return picked({ engine: 'webgpu', reason: `WebGPU on ${name}.` });
}

/** The message of a thrown value (an Error's, else the value itself). @param {unknown} e */
const errorMessage = (e) => String(/** @type {any} */ (e)?.message || e);

/**
 * @param {string} url
 * @param {RequestInit} [init]
 */
async function fetchOk(url, init) {
  let resp;
  try { resp = await fetch(url, init); } catch (e) { throw new Error(`${url}: fetch failed (${errorMessage(e)})`); }
  if (!resp.ok && resp.status !== 404) throw new Error(`${url}: HTTP ${resp.status} ${resp.statusText}`);
  return resp;
}

// What identifies a version of a file without downloading it.
const versionOf = (/** @type {Headers} */ h) => [h.get('etag'), h.get('last-modified'), h.get('content-length')].join('|');

/**
 * The bytes at `url`, streamed with progress. With Cache Storage, a cached copy is revalidated by
 * one HEAD request (ETag / Last-Modified / length) and read from the cache when unchanged; a
 * changed file is downloaded again. Offline, the cached copy is used.
 * @param {string} url
 * @param {((p: LoadProgress) => void) | undefined} onProgress
 * @param {boolean} useCache
 * @returns {Promise<Uint8Array>}
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
  if (resp.status === 404) throw Object.assign(new Error(`${url}: HTTP 404 Not Found`), { status: 404 });
  const total = Number(resp.headers.get('content-length')) || 0;
  /** @type {Uint8Array[]} */
  const chunks = [];
  let loaded = 0;
  if (!resp.body) throw new Error(`${url}: the response has no body`);
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
    // Not awaited: the Response holds its own copy of the bytes, and the caller need not wait for the disk.
    cache.put(url, new Response(bytes, { headers })).catch(() => {}); // quota: just do not cache
  }
  return bytes;
}

/**
 * The three file URLs of a model: a folder URL, a Hub id `hf:owner/name[@revision]` (resolved
 * against `hubEndpoint`, https://huggingface.co by default; `pipeline`: a pipeline repo's unet/
 * and scheduler/, which loadModel finds out by itself), or {config, weights, scheduler} URLs as is.
 * @param {string | ModelUrls} [model]
 * @param {{ hubEndpoint?: string, pipeline?: boolean }} [options]
 * @returns {ModelUrls}
 */
export function modelUrls(model = DEFAULT_MODEL, { hubEndpoint, pipeline } = {}) {
  if (typeof model !== 'string') return model;
  if (isHubId(model)) return hubModelUrls(model, { hubEndpoint, pipeline });
  const base = new URL(model.endsWith('/') ? model : `${model}/`, globalThis.location?.href).href;
  return { config: `${base}config.json`, weights: `${base}diffusion_pytorch_model.safetensors`, scheduler: `${base}scheduler_config.json` };
}

/**
 * A diffusers model: config.json, diffusion_pytorch_model.safetensors (fp32 or fp16, kept as
 * stored) and scheduler_config.json (optional: diffusers' defaults when it is absent). `model` is
 * a folder URL, {config, weights, scheduler} URLs, or a Hub id `hf:owner/name[@revision]`
 * (`hubEndpoint`: a mirror instead of https://huggingface.co), whose model_index.json is asked
 * for first: a pipeline repo loads its unet/ and scheduler/.
 * @param {string | ModelUrls} [model]
 * @param {{ onProgress?: (p: LoadProgress) => void, cache?: boolean, hubEndpoint?: string }} [options]
 * @returns {Promise<ModelFiles>}
 */
export async function loadModel(model = DEFAULT_MODEL, { onProgress, cache = true, hubEndpoint } = {}) {
  const hub = isHubId(model);
  const urls = hub ? await resolveHubModel(/** @type {string} */ (model), { hubEndpoint }) : modelUrls(model);
  /** @type {(url: string, required: boolean) => Promise<string | undefined>} */
  const text = async (url, required) => {
    const resp = await fetchOk(url, { cache: 'no-store' });
    if (resp.status === 404) {
      if (required) throw new Error(hub ? hubStatusMessage(url, 404) : `${url}: HTTP 404 Not Found`);
      return undefined;
    }
    return resp.text();
  };
  // The three requests overlap: on the page's first frame's critical path. Where several fail (a
  // wrong folder URL), the config's failure is the one reported, whichever answer came first.
  const config = text(urls.config, true);
  const weightBytes = fetchWeights(urls.weights, onProgress, cache).catch(async (e) => {
    // A Hub repo without safetensors weights may have pickle ones: say to convert them.
    throw hub && e?.status === 404 ? await explainMissingWeights(urls.weights, e) : e;
  });
  const rest = Promise.all([urls.scheduler ? text(urls.scheduler, false) : undefined, weightBytes]);
  rest.catch(() => {}); // reported below, after the config's
  const configText = /** @type {string} */ (await config);
  const [scheduler, weights] = await rest;
  return { config: configText, weights, scheduler };
}

/**
 * A classifier's two files (config.json text, model.safetensors bytes) from a folder URL or
 * {config, weights} URLs.
 * @param {string | ClassifierUrls} classifier
 * @returns {Promise<ClassifierFiles>}
 */
async function loadClassifierFiles(classifier) {
  const urls = typeof classifier === 'string'
    ? (() => { const base = new URL(classifier.endsWith('/') ? classifier : `${classifier}/`, globalThis.location?.href).href; return { config: `${base}config.json`, weights: `${base}model.safetensors` }; })()
    : classifier;
  const get = async (/** @type {string} */ url) => {
    const resp = await fetchOk(url, { cache: 'no-store' });
    if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status} ${resp.statusText}`.trim());
    return resp;
  };
  const [config, weights] = await Promise.all([get(urls.config).then((r) => r.text()), get(urls.weights).then(async (r) => new Uint8Array(await r.arrayBuffer()))]);
  return { config, weights };
}

/**
 * The test hook (not public API): `sampler[loseDeviceForTest]()` and `element[loseDeviceForTest]()`
 * lose the WebGPU device now, as a driver reset would; the run in progress throws "… the GPU
 * device was lost …" and the next run makes a new device. False on the CPU engine. A registered
 * symbol, so tests and pages reach it as `Symbol.for('ddim-webgpu.loseDeviceForTest')` without
 * importing this module.
 */
export const loseDeviceForTest = Symbol.for('ddim-webgpu.loseDeviceForTest');

/**
 * What runs a Sampler's model: the wasm DiffusionSampler on this thread (MainThreadEngine) or the
 * engine worker (WorkerThreadEngine). Sampler adds what both share: the fields, run()'s options,
 * abort signal and errors, the checks, destroy()'s bookkeeping.
 * @typedef {object} Engine
 * @property {(options: RawRunOptions) => AsyncGenerator<FrameInfo, void, undefined>} steps
 *   One run: yields each frame once drawn; throws Error("cancelled") when stopped; a caller that
 *   leaves early is answered once the run has stopped.
 * @property {() => void} stop Ends the run in progress within one step.
 * @property {() => boolean} loseDevice The test hook (false on the CPU engine).
 * @property {() => SampleImage | null} lastImage
 * @property {() => Float32Array | null} lastSample
 * @property {() => Float32Array | null} lastLatent
 * @property {() => RunResult | null} lastResult
 * @property {() => FilmFrame[]} film
 * @property {() => SamplerStats} stats
 * @property {() => void} destroy Frees the engine (once; a run in progress ends).
 * @property {(config: string, weights: Uint8Array) => Promise<ClassifierInfo>} loadClassifier
 *   Loads a classifier for classifier guidance (between runs).
 */

/**
 * A model bound to a canvas on one engine, the engine on the page's thread or in a Web Worker
 * (`thread`). Made by createSampler().
 * @implements {SamplerApi}
 */
export class Sampler {
  /** @type {Engine} */
  #engine;
  #running = false;
  /** @type {EngineName} */
  engine;
  /** @type {string} */
  reason;
  /** @type {string} */
  adapter;
  /** @type {ModelInfo} */
  modelInfo;
  /** @type {'main' | 'worker'} */
  thread;
  /** @type {string} */
  threadReason;
  destroyed = false;

  /**
   * @param {Engine} engine
   * @param {EngineChoice} choice
   * @param {{ adapter: string, modelInfo: ModelInfo, thread: 'main' | 'worker', threadReason: string }} about
   */
  constructor(engine, choice, { adapter, modelInfo, thread, threadReason }) {
    this.#engine = engine;
    this.engine = choice.engine.startsWith('cpu') ? 'cpu' : 'webgpu';
    this.reason = choice.reason;
    this.adapter = adapter;
    this.modelInfo = modelInfo;
    this.thread = thread;
    this.threadReason = threadReason;
    live.add(this);
  }

  /**
   * Samples; yields {step, total, timestep, phase, ms} after each step is drawn. Options: see
   * RunOptions in index.d.ts; `signal` (an AbortSignal) ends the run within one step, which then
   * throws the signal's reason (an AbortError).
   * @param {RunOptions} [options]
   * @returns {AsyncGenerator<FrameInfo, void, undefined>}
   */
  async *run({ signal, label, ...options } = {}) {
    if (this.destroyed) throw new Error('this sampler was destroyed');
    if (this.#running) throw new Error('a run is already in progress: stop it first');
    signal?.throwIfAborted();
    const onAbort = () => this.stop();
    signal?.addEventListener('abort', onAbort);
    this.#running = true;
    try {
      yield* this.#engine.steps({ ...options, classLabel: label ?? options.classLabel });
    } catch (e) {
      if (/** @type {any} */ (e)?.message === 'cancelled' && signal?.aborted) throw signal.reason ?? new DOMException('aborted', 'AbortError');
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.#running = false;
    }
  }

  /** Ends the run in progress within one step (run() then throws Error("cancelled")). */
  stop() { if (!this.destroyed) this.#engine.stop(); }

  /**
   * Loads a noise-aware classifier for classifier guidance (`classifierScale`, `classifierClass`,
   * the "classifier" view): a folder URL holding config.json and model.safetensors, {config,
   * weights} URLs, or {files: {config, weights}} (text and bytes); the bundled digit classifier by
   * default. Resolves with {parameters, numClasses, sampleSize, inChannels}, also kept in
   * `modelInfo.classifier`. Not while a run is in progress.
   * @param {string | ClassifierUrls | { files: ClassifierFiles }} [classifier]
   * @returns {Promise<ClassifierInfo>}
   */
  async loadClassifier(classifier = DEFAULT_CLASSIFIER) {
    if (this.destroyed) throw new Error('this sampler was destroyed');
    if (this.#running) throw new Error('a run is in progress: load the classifier between runs');
    const files = 'files' in /** @type {object} */ (classifier) ? /** @type {{ files: ClassifierFiles }} */ (classifier).files : await loadClassifierFiles(/** @type {string | ClassifierUrls} */ (classifier));
    const info = await this.#engine.loadClassifier(files.config, files.weights);
    this.modelInfo = { ...this.modelInfo, classifier: info };
    return info;
  }

  /** The test hook (see `loseDeviceForTest` above). */
  [loseDeviceForTest]() { return !this.destroyed && this.#engine.loseDevice(); }

  /** The last finished sample as {width, height, data: RGBA Uint8ClampedArray}, or null. */
  lastImage() { return this.#engine.lastImage(); }
  /** The last finished sample's values ([N, C, H, W] flattened, −1 … 1), or null. */
  lastSample() { return this.#engine.lastSample(); }
  /** The x_T of the last inversion, or null. */
  lastLatent() { return this.#engine.lastLatent(); }
  /** What the last finished run reported ({reconstruction} after an inversion), or null. */
  lastResult() { return this.#engine.lastResult(); }
  /** The frames of the last run made with `record: true`: {timestep, phase, width, height, xt, x0}. */
  film() { return this.#engine.film(); }
  /** {gpuBuffers, gpuBytes, destroyed}: GPU buffers this sampler holds (0 on the CPU engine). */
  stats() { return this.#engine.stats(); }

  /** Frees the GPU device (every buffer) or the Web Workers, and the model's memory. */
  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    this.#engine.destroy();
  }
}

/**
 * The engine on the page's thread: the wasm DiffusionSampler drawing to the page's canvas.
 * @implements {Engine}
 */
class MainThreadEngine {
  #inner;
  /** @type {Promise<void> | null} */
  #pending = null;
  /** @type {RunResult | null} */
  #result = null;
  #freed = false;
  /** @param {DiffusionSampler} inner */
  constructor(inner) { this.#inner = inner; }

  /** @param {RawRunOptions} options */
  async *steps(options) {
    /** @type {FrameInfo[]} */
    const frames = [];
    /** @type {((value?: unknown) => void) | null} */
    let wake = null;
    let finished = false;
    /** @type {unknown} */
    let failure = null;
    const notify = () => { wake?.(); wake = null; };
    this.#result = null;
    const run = this.#inner.run(options, (/** @type {FrameInfo} */ f) => { frames.push(f); notify(); })
      .then((value) => { this.#result = value ?? null; finished = true; notify(); }, (e) => { failure = e; finished = true; notify(); });
    this.#pending = run;
    try {
      for (;;) {
        while (frames.length) yield /** @type {FrameInfo} */ (frames.shift());
        if (finished) break;
        await new Promise((r) => { wake = r; });
      }
      if (failure) throw failure;
    } finally {
      if (!finished) { this.#inner.cancel(); await run; } // the caller left the loop early
      this.#pending = null;
    }
  }

  stop() { this.#inner.cancel(); }
  /** @param {string} config @param {Uint8Array} weights */
  async loadClassifier(config, weights) { return /** @type {ClassifierInfo} */ (this.#inner.loadClassifier(config, weights)); }
  loseDevice() { return this.#inner.loseDeviceForTest(); }
  lastImage() { return this.#inner.lastImage(); }
  lastSample() { return this.#inner.lastSample() ?? null; }
  lastLatent() { return this.#inner.lastLatent() ?? null; }
  lastResult() { return this.#result; }
  film() { return Array.from({ length: this.#inner.filmLength() }, (_, k) => /** @type {FilmFrame} */ (this.#inner.filmFrame(k))); }
  /** @returns {SamplerStats} */
  stats() { return this.#freed ? { gpuBuffers: 0, gpuBytes: 0, destroyed: true } : this.#inner.stats(); }

  destroy() {
    this.#inner.destroy();
    // A run in progress keeps its own reference until it stops; free the handle after that.
    Promise.resolve(this.#pending).catch(() => {}).finally(() => { this.#freed = true; this.#inner.free(); });
  }
}

/** {samplers, gpuBuffers, gpuBytes, wasmHeapBytes} over every sampler not yet destroyed (leak checks). */
export function liveStats() {
  let gpuBuffers = 0, gpuBytes = 0;
  for (const s of live) { const st = s.stats(); gpuBuffers += st.gpuBuffers; gpuBytes += st.gpuBytes; }
  return { samplers: live.size, gpuBuffers, gpuBytes, wasmHeapBytes: wasmMemory?.buffer.byteLength ?? 0 };
}

// Whether this browser can present a WebGPU canvas (headless Chromium cannot: it loses the device
// at the first present). Tried here, on the page's thread, on a throwaway canvas and device: a
// worker has no document to try with, so its engine gets the answer.
async function canPresentWebGpu() {
  try {
    const gpu = navigator.gpu;
    const adapter = await gpu?.requestAdapter();
    if (!gpu || !adapter) return false;
    const device = await adapter.requestDevice();
    let lost = false;
    device.lost.then(() => { lost = true; });
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 8;
    const ctx = canvas.getContext('webgpu');
    if (!ctx) { device.destroy(); return false; }
    ctx.configure({ device, format: gpu.getPreferredCanvasFormat(), alphaMode: 'opaque' });
    const enc = device.createCommandEncoder();
    enc.beginRenderPass({ colorAttachments: [{ view: ctx.getCurrentTexture().createView(), loadOp: 'clear', storeOp: 'store', clearValue: [0, 0, 0, 1] }] }).end();
    device.queue.submit([enc.finish()]);
    await Promise.race([device.queue.onSubmittedWorkDone(), new Promise((r) => setTimeout(r, 1000))]);
    await new Promise((r) => setTimeout(r, 100));
    device.destroy();
    return !lost;
  } catch {
    return false;
  }
}

// Why the engine cannot run in a worker here (null: it can).
/** @param {HTMLCanvasElement} canvas */
function noWorkerReason(canvas) {
  if (typeof Worker !== 'function') return 'this browser has no Web Workers';
  if (typeof OffscreenCanvas !== 'function' || typeof canvas.transferControlToOffscreen !== 'function') return 'this browser cannot hand a canvas to a worker (no OffscreenCanvas)';
  return null;
}

// Starts the engine worker; resolves with {worker, webgpu} once its module has loaded (so a failure
// leaves the canvas usable) and says whether WebGPU exists in workers here.
/** @returns {Promise<{ worker: Worker, webgpu: boolean }>} */
function startEngineWorker() {
  const worker = new Worker(new URL('./engine-worker.js', import.meta.url), { type: 'module' });
  return new Promise((resolve, reject) => {
    worker.onmessage = (e) => { if (e.data?.type === 'hello') resolve({ worker, webgpu: e.data.webgpu }); };
    worker.onerror = (e) => { worker.terminate(); reject(new Error(e.message || 'its script could not be loaded')); };
  });
}

/**
 * The engine in a module Web Worker (engine-worker.js) drawing to an OffscreenCanvas; this thread
 * relays its frames (protocol: engine-worker.js) and keeps what the last run left.
 * @implements {Engine}
 */
class WorkerThreadEngine {
  #worker;
  /** @type {SamplerStats} */
  #stats;
  /** @type {SampleImage | null} */
  #image = null;
  /** @type {{ sample: Float32Array | null, latent: Float32Array | null, result: RunResult | null, film: FilmFrame[] }} */
  #last = { sample: null, latent: null, result: null, film: [] };
  /** @type {((m: any) => void) | null} */
  #listener = null;
  #destroyed = false;
  #webgpu;
  /**
   * @param {Worker} worker
   * @param {SamplerStats} stats
   * @param {boolean} webgpu Whether the worker runs the WebGPU engine.
   */
  constructor(worker, stats, webgpu) {
    this.#worker = worker;
    this.#stats = stats;
    this.#webgpu = webgpu;
    worker.onmessage = (e) => {
      if (e.data.stats) this.#stats = e.data.stats;
      this.#listener?.(e.data);
    };
  }

  /** @param {RawRunOptions} options */
  async *steps(options) {
    /** @type {any[]} */
    const queue = [];
    /** @type {((value?: unknown) => void) | null} */
    let wake = null;
    this.#listener = (m) => { queue.push(m); wake?.(); wake = null; };
    let ended = false;
    try {
      this.#worker.postMessage({ type: 'run', options });
      for (;;) {
        while (!queue.length) await new Promise((r) => { wake = r; });
        const m = queue.shift();
        if (m.type === 'frame') {
          // Let the page paint the frame the worker just drew before the next one is computed.
          // (A hidden tab runs no animation frames: never wait longer than 100 ms.)
          await new Promise((r) => { requestAnimationFrame(() => r(undefined)); setTimeout(r, 100); });
          try { yield m.frame; } finally { this.#worker.postMessage({ type: 'ack', id: m.id }); }
        } else if (m.type === 'end' || m.type === 'destroyed' || m.type === 'error') {
          ended = true;
          if (m.image) this.#image = m.image;
          if (m.type === 'end' && !m.error) this.#last = { sample: m.sample ?? null, latent: m.latent ?? this.#last.latent, result: m.result ?? null, film: m.film };
          const error = m.type === 'destroyed' ? 'cancelled' : m.error ?? m.message;
          if (error) throw new Error(error);
          return;
        }
      }
    } finally {
      if (!ended && !this.#destroyed) {
        // The caller left the loop early: stop the run and wait for its end.
        this.stop();
        while (!queue.some((m) => m.type === 'end' || m.type === 'destroyed')) {
          for (const m of queue.splice(0)) if (m.type === 'frame') this.#worker.postMessage({ type: 'ack', id: m.id });
          await new Promise((r) => { wake = r; });
        }
      }
      this.#listener = null;
    }
  }

  stop() { if (!this.#destroyed) this.#worker.postMessage({ type: 'cancel' }); }
  /** @param {string} config @param {Uint8Array} weights @returns {Promise<ClassifierInfo>} */
  loadClassifier(config, weights) {
    if (this.#destroyed) return Promise.reject(new Error('this sampler was destroyed'));
    if (this.#listener) return Promise.reject(new Error('a run is in progress: load the classifier between runs'));
    return new Promise((resolve, reject) => {
      this.#listener = (m) => {
        this.#listener = null;
        if (m.type === 'classifier') resolve(m.info);
        else reject(new Error(m.message ?? m.error ?? 'the engine worker ended'));
      };
      this.#worker.postMessage({ type: 'classifier', config, weights });
    });
  }
  loseDevice() { this.#worker.postMessage({ type: 'lose-device' }); return this.#webgpu; }
  lastImage() { return this.#image; }
  lastSample() { return this.#last.sample; }
  lastLatent() { return this.#last.latent; }
  lastResult() { return this.#last.result; }
  film() { return this.#last.film; }
  stats() { return this.#destroyed ? { gpuBuffers: 0, gpuBytes: 0, destroyed: true } : { ...this.#stats }; }

  /** Asks the worker to destroy its device, then terminates it (which frees everything it held). */
  destroy() {
    this.#destroyed = true;
    const worker = this.#worker;
    worker.postMessage({ type: 'destroy' });
    this.#listener?.({ type: 'destroyed' });
    setTimeout(() => worker.terminate(), 500);
  }
}

/**
 * createSampler({ canvas, model, engine, files, onProgress, thread, hubEndpoint }): loads the model
 * (a folder URL, a Hub id `hf:owner/name[@revision]` from `hubEndpoint` or https://huggingface.co,
 * the bundled model by default, or `files` = {config, weights, scheduler} bytes/strings, or a
 * promise of them, e.g. loadModel() started while chooseEngine() asks for the adapter) and
 * builds a sampler on `canvas` (a fresh canvas: a canvas keeps the first context it is given).
 * thread "auto" (default) runs the engine in a module Web Worker on an OffscreenCanvas where the
 * browser allows, else on the page's thread (`threadReason` says why); "main" keeps it there.
 * @param {CreateSamplerOptions} options
 * @returns {Promise<Sampler>}
 */
export async function createSampler({ canvas, model = DEFAULT_MODEL, engine = 'auto', files, onProgress, cache = true, thread = 'auto', hubEndpoint } = /** @type {CreateSamplerOptions} */ ({})) {
  if (!canvas) throw new Error('createSampler needs a canvas');
  // The wasm load, the adapter request and the model download overlap (none needs another). An
  // engine already chosen with chooseEngine() is taken as is (no second adapter request).
  const wasm = ready();
  const loading = files ? Promise.resolve(files) : loadModel(model, { onProgress, cache, hubEndpoint });
  // Both are reported by the awaits below, not as unhandled rejections.
  wasm.catch(() => {});
  loading.catch(() => {});
  const choice = typeof engine === 'object' ? engine : await chooseEngine(engine);
  if (thread === 'main' && choice.engine.startsWith('cpu')) {
    // The workers this thread's CPU engine will make (src/web: ?threads / cpu:N, else one per core up to 4).
    startSpareWorkers(Number(choice.engine.split(':')[1]) || undefined);
  }
  let m;
  try {
    await wasm;
    m = await loading;
  } catch (e) {
    endSpareWorkers();
    throw e;
  }
  let why = thread === 'main' ? 'The engine runs on the page\'s thread (thread: "main" was asked for).' : null;
  if (!why) {
    const no = noWorkerReason(canvas);
    if (no) why = `The engine runs on the page's thread: ${no}.`;
  }
  if (!why) {
    const presents = choice.engine === 'webgpu' ? await canPresentWebGpu() : false;
    let worker = null;
    try {
      const started = await startEngineWorker();
      worker = started.worker;
      if (choice.engine === 'webgpu' && !started.webgpu) {
        worker.terminate();
        worker = null;
        why = "The engine runs on the page's thread: this browser has no WebGPU in workers.";
      }
    } catch (e) {
      why = `The engine runs on the page's thread: the engine worker did not start (${errorMessage(e)}).`;
    }
    if (worker) {
      endSpareWorkers(); // the engine worker starts CPU workers of its own
      const offscreen = canvas.transferControlToOffscreen();
      // Our own download is handed over; the caller's bytes are copied.
      const weights = files ? m.weights.slice() : m.weights;
      const w = worker;
      /** @type {{ adapter: string, modelInfo: ModelInfo, stats: SamplerStats }} */
      const created = await new Promise((resolve, reject) => {
        w.onmessage = (e) => {
          if (e.data.type === 'created') resolve(e.data);
          else if (e.data.type === 'error') { w.terminate(); reject(new Error(e.data.message)); }
        };
        w.postMessage({ type: 'create', canvas: offscreen, config: m.config, weights, scheduler: m.scheduler, engine: choice.engine, presents },
          [offscreen, weights.buffer]);
      });
      return new Sampler(new WorkerThreadEngine(worker, created.stats, choice.engine === 'webgpu'), choice,
        { adapter: created.adapter, modelInfo: created.modelInfo, thread: 'worker', threadReason: 'The engine runs in a Web Worker and draws to an OffscreenCanvas.' });
    }
  }
  let inner;
  try {
    inner = await DiffusionSampler.create(canvas, m.config, m.weights, m.scheduler, choice.engine);
  } finally {
    endSpareWorkers();
  }
  return new Sampler(new MainThreadEngine(inner), choice, { adapter: inner.adapter, modelInfo: inner.modelInfo(), thread: 'main', threadReason: why ?? "The engine runs on the page's thread." });
}
