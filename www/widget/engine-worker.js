// The engine in a module Web Worker, drawing to the OffscreenCanvas the page transferred
// (canvas.transferControlToOffscreen): the page's thread only relays frames. Started by
// sampler.js as `new Worker(new URL('./engine-worker.js', import.meta.url), {type: 'module'})`.
// Protocol: worker → page {hello, webgpu} once loaded; page → worker {create, canvas, config, weights, scheduler, engine, presents} | {run,
// options} | {ack, id} | {cancel} | {lose-device} (test hook) | {destroy}; worker → page {created, adapter,
// modelInfo} | {frame, id, frame} (the next step waits for its ack) | {end, error?, image, sample, latent, result, film} |
// {destroyed} | {error, message}; each of these carries the sampler's stats.
import { ready } from './sampler.js';
import { DiffusionSampler } from './ddim_webgpu.js';

let inner = null;
let nextFrame = 0;
const acks = new Map();
const stats = () => (inner ? inner.stats() : { gpuBuffers: 0, gpuBytes: 0, destroyed: true });
const message = (e) => String(e?.message ?? e);

onmessage = async ({ data: m }) => {
  try {
    if (m.type === 'ack') {
      acks.get(m.id)?.();
      acks.delete(m.id);
    } else if (m.type === 'create') {
      await ready();
      inner = await DiffusionSampler.create(m.canvas, m.config, m.weights, m.scheduler, m.engine, m.presents);
      postMessage({ type: 'created', adapter: inner.adapter, modelInfo: inner.modelInfo(), stats: stats() });
    } else if (m.type === 'run') {
      try {
        const result = await inner.run(m.options, async (frame) => {
          // End this task first: the OffscreenCanvas commits its frame to the page's canvas when
          // the worker's task ends (or at its next animation frame), not at putImageData.
          await new Promise((r) => { self.requestAnimationFrame?.(() => r()); setTimeout(r, 50); });
          const id = nextFrame++;
          postMessage({ type: 'frame', id, frame, stats: stats() });
          return new Promise((resolve) => acks.set(id, resolve));
        });
        const film = Array.from({ length: inner.filmLength() }, (_, k) => inner.filmFrame(k));
        postMessage({ type: 'end', image: inner.lastImage(), sample: inner.lastSample(), latent: inner.lastLatent(), result, film, stats: stats() });
      } catch (e) {
        postMessage({ type: 'end', error: message(e), stats: stats() });
      }
    } else if (m.type === 'cancel') {
      inner?.cancel();
    } else if (m.type === 'lose-device') {
      inner?.loseDeviceForTest();
    } else if (m.type === 'destroy') {
      inner?.destroy();
      for (const resolve of acks.values()) resolve();
      postMessage({ type: 'destroyed', stats: stats() });
    }
  } catch (e) {
    postMessage({ type: 'error', message: message(e), stats: stats() });
  }
};
postMessage({ type: 'hello', webgpu: !!navigator.gpu });
