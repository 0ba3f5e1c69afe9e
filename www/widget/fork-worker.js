// A fork worker of the threaded CPU engine (cpu-worker-threads.js starts it): it instantiates the
// threaded build on the engine worker's module and shared memory, says "ready", and serves the
// engine's fork pool (src/fast/fork.rs) until the engine worker ends it. It never returns to its
// event loop: it waits on the shared memory (Atomics.wait), which workers may.
import { initSync, forkWorker } from './threads/ddim_webgpu.js';

const scope = /** @type {WorkerSelf} */ (/** @type {unknown} */ (globalThis));
scope.onmessage = (/** @type {MessageEvent} */ { data }) => {
  try {
    initSync({ module: data.module, memory: data.memory });
  } catch (e) {
    scope.postMessage({ type: 'error', message: String(/** @type {any} */ (e)?.message ?? e) });
    return;
  }
  scope.postMessage({ type: 'ready' });
  forkWorker();
};
