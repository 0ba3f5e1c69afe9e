// The engine in a module Web Worker, drawing to the OffscreenCanvas the page transferred
// (canvas.transferControlToOffscreen): the page's thread only relays frames. Started by
// sampler.js as `new Worker(new URL('./engine-worker.js', import.meta.url), {type: 'module'})`.
// Protocol: worker → page {hello, webgpu} once loaded; page → worker {create, canvas, config, weights, scheduler, engine, presents} | {run,
// options} | {ack, id} | {cancel} | {classifier, config, weights} | {lose-device} (the test hook) | {destroy};
// worker → page {created, adapter, modelInfo} | {classifier, info} | {frame, id, frame} (the next step waits for its ack) | {end, error?, image, sample, latent, result, film} |
// {destroyed} | {error, message}; each of these carries the sampler's stats.
import { ready } from './sampler.js';
import { DiffusionSampler } from './ddim_webgpu.js';

/** This worker's global scope (`npm run typecheck` sees the page's DOM types: types/env.d.ts). */
const scope = /** @type {WorkerSelf} */ (/** @type {unknown} */ (globalThis));
/** @type {DiffusionSampler | null} */
let inner = null;
let nextFrame = 0;
/** @type {Map<number, (value?: unknown) => void>} */
const acks = new Map();
/** @returns {import('./index.js').SamplerStats} */
const stats = () => (inner ? inner.stats() : { gpuBuffers: 0, gpuBytes: 0, destroyed: true });
const message = (/** @type {unknown} */ e) => String(/** @type {any} */ (e)?.message ?? e);

scope.onmessage = async (/** @type {MessageEvent} */ { data: m }) => {
  try {
    if (m.type === 'ack') {
      acks.get(m.id)?.();
      acks.delete(m.id);
    } else if (m.type === 'create') {
      await ready();
      inner = await DiffusionSampler.create(m.canvas, m.config, m.weights, m.scheduler, m.engine, m.presents);
      scope.postMessage({ type: 'created', adapter: inner.adapter, modelInfo: inner.modelInfo(), stats: stats() });
    } else if (m.type === 'run') {
      const sampler = inner;
      try {
        if (!sampler) throw new Error('no sampler: "create" first');
        const result = await sampler.run(m.options, async (/** @type {import('./index.js').FrameInfo} */ frame) => {
          // End this task first: the OffscreenCanvas commits its frame to the page's canvas when
          // the worker's task ends (or at its next animation frame), not at putImageData.
          await new Promise((r) => { scope.requestAnimationFrame?.(() => r(undefined)); setTimeout(r, 50); });
          const id = nextFrame++;
          scope.postMessage({ type: 'frame', id, frame, stats: stats() });
          return new Promise((resolve) => acks.set(id, resolve));
        });
        const film = Array.from({ length: sampler.filmLength() }, (_, k) => sampler.filmFrame(k));
        scope.postMessage({ type: 'end', image: sampler.lastImage(), sample: sampler.lastSample(), latent: sampler.lastLatent(), result, film, stats: stats() });
      } catch (e) {
        scope.postMessage({ type: 'end', error: message(e), stats: stats() });
      }
    } else if (m.type === 'classifier') {
      if (!inner) throw new Error('no sampler: "create" first');
      scope.postMessage({ type: 'classifier', info: inner.loadClassifier(m.config, m.weights), stats: stats() });
    } else if (m.type === 'cancel') {
      inner?.cancel();
    } else if (m.type === 'lose-device') {
      inner?.loseDeviceForTest();
    } else if (m.type === 'destroy') {
      inner?.destroy();
      for (const resolve of acks.values()) resolve();
      scope.postMessage({ type: 'destroyed', stats: stats() });
    }
  } catch (e) {
    scope.postMessage({ type: 'error', message: message(e), stats: stats() });
  }
};
scope.postMessage({ type: 'hello', webgpu: !!navigator.gpu });
