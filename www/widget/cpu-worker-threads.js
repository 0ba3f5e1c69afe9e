// The CPU engine's worker on a cross-origin isolated page: the threaded build (wasm atomics over a
// shared memory, threads/ddim_webgpu.js), one U-Net whose forwards split across this worker and
// its fork workers (fork-worker.js: each instantiates the same module on this worker's memory and
// serves the engine's fork pool, src/fast/fork.rs). Started by the engine as
// `new Worker(new URL('./cpu-worker-threads.js', import.meta.url), { type: 'module' })`.
// Protocol: cpu-worker.js's, and "load" carries `threads` (how many, this worker included) and, for
// tests, `minShareForks` (fast::fork::Split); the "ready" reply says how many threads run and the kernel.
// {type: "bench", config, batch, reps, threads} → {type: "bench", result}: benchmarkConfig on these threads. A fork worker that fails to start is an error naming why.
import init, { UNetWorker, benchmarkConfig, engineMemory, engineModule } from './threads/ddim_webgpu.js';
import { errorMessage, trapReason } from './wasm.js';

/** This worker's global scope (`npm run typecheck` sees the page's DOM types: types/env.d.ts). */
const scope = /** @type {WorkerSelf} */ (/** @type {unknown} */ (globalThis));
/** @type {Promise<unknown> | null} */
let ready = null;
/** @type {UNetWorker | null} */
let unet = null;
/** @type {Worker[]} */
const forks = [];
/** Why this worker's WebAssembly can no longer run (a trap: out of memory, or a crash), if it cannot. */
let broken = '';

/** Starts one fork worker on this instance's module and memory; resolves once it serves. */
function startFork() {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('./fork-worker.js', import.meta.url), { type: 'module' });
    forks.push(w);
    w.onmessage = (/** @type {MessageEvent} */ e) => (e.data.type === 'ready' ? resolve(undefined) : reject(new Error(`a fork worker failed: ${e.data.message}`)));
    w.onerror = (/** @type {ErrorEvent} */ e) => reject(new Error(`a fork worker failed: ${e.message || 'its script could not be loaded'}`));
    w.postMessage({ module: engineModule(), memory: engineMemory() });
  });
}

/** Loads the threaded build and starts fork workers until `threads` threads run; returns that count. */
async function startThreads(/** @type {number | undefined} */ requested) {
  if (!scope.crossOriginIsolated) throw new Error('this worker is not cross-origin isolated (wasm threads need COOP/COEP headers)');
  await (ready ??= init());
  const threads = Math.max(1, Math.floor(requested || 1));
  while (forks.length < threads - 1) await startFork();
  return threads;
}

scope.onmessage = async (/** @type {MessageEvent} */ e) => {
  const m = e.data;
  if (m.type === 'module') return; // the page's module is the unthreaded build: this worker loads its own
  try {
    if (broken) throw new Error(broken);
    if (m.type === 'load') {
      const threads = await startThreads(m.threads);
      unet = new UNetWorker(m.config, new Uint8Array(m.weights));
      unet.setThreads(threads);
      // A test hook: every conv split (min share 0 fork/joins), where the cost model would keep a small model's whole.
      if (typeof m.minShareForks === 'number') unet.setSplit(threads, m.minShareForks);
      scope.postMessage({ type: 'ready', threads: unet.threads(), kernel: unet.kernel() });
    } else if (m.type === 'bench') {
      // tests/page/scale_bench.mjs: benchmarkConfig (src/web/bench.rs) on this worker's threads.
      await startThreads(m.threads);
      scope.postMessage({ type: 'bench', result: await benchmarkConfig(m.config, 'cpu', m.batch, m.reps) });
    } else {
      if (!unet) throw new Error('no U-Net: "load" first');
      const out = unet.forward(m.sample, m.shape, m.timesteps, m.labels);
      scope.postMessage({ type: 'result', out }, [out.buffer]);
    }
  } catch (err) {
    broken ||= trapReason(err, 'a shared wasm heap');
    if (broken) unet = null;
    scope.postMessage({ type: 'error', message: broken || errorMessage(err) });
  }
};
