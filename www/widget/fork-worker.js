// A fork worker of the threaded CPU engine (cpu-worker-threads.js starts it): it instantiates the
// threaded build on the engine worker's module and shared memory, says "ready", and serves the
// engine's fork pool (src/fast/fork.rs) until the engine worker ends it. It never returns to its
// event loop: it waits on the shared memory (Atomics.wait), which workers may. If its instance
// traps, it marks the pool broken (forkWorkerFailed) so that the engine's forward fails, named.
import { initSync, forkWorker, forkWorkerFailed } from './threads/ddim_webgpu.js';

const scope = /** @type {WorkerSelf} */ (/** @type {unknown} */ (globalThis));
scope.onmessage = (/** @type {MessageEvent} */ { data }) => {
  try {
    initSync({ module: data.module, memory: data.memory });
  } catch (e) {
    scope.postMessage({ type: 'error', message: String(/** @type {any} */ (e)?.message ?? e) });
    return;
  }
  scope.postMessage({ type: 'ready' });
  try {
    forkWorker();
  } catch (e) {
    // A trap (out of memory, a panic): the share this worker held never ends; the pool is marked
    // broken so the engine's worker fails its forward with a message instead of waiting forever.
    try { forkWorkerFailed(); } catch { /* the instance cannot even do that: nothing more to do */ }
    throw e;
  }
};
