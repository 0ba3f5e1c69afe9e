// A CPU-engine worker: one U-Net on the fast CPU ops (wasm simd128, or relaxed SIMD: wasm.js). The package creates it as
// `new Worker(new URL('./cpu-worker.js', import.meta.url), { type: 'module' })`, the form bundlers
// (Vite, webpack 5) recognise and bundle. Protocol: see src/web/workers.rs; besides, the page sends
// {type: "module", module} first, its compiled WebAssembly.Module (wasm.js), which this worker
// instantiates instead of downloading and compiling its own.
import init, { UNetWorker } from './ddim_webgpu.js';
import { initWasm, errorMessage, trapReason } from './wasm.js';

/** This worker's global scope (`npm run typecheck` sees the page's DOM types: types/env.d.ts). */
const scope = /** @type {WorkerSelf} */ (/** @type {unknown} */ (globalThis));
/** @type {ReturnType<typeof initWasm> | null} */
let ready = null;
const start = (/** @type {WebAssembly.Module | undefined} */ module = undefined) => (ready ??= initWasm(init, module));
/** @type {UNetWorker | null} */
let unet = null;
/** Why this worker's WebAssembly can no longer run (a trap: out of memory, or a crash), if it cannot. */
let broken = '';
scope.onmessage = async (/** @type {MessageEvent} */ e) => {
  const m = e.data;
  if (m.type === 'module') {
    start(m.module).catch(() => {}); // a failure is reported to the next message
    return;
  }
  try {
    if (broken) throw new Error(broken);
    await start();
    if (m.type === 'load') {
      unet = new UNetWorker(m.config, new Uint8Array(m.weights));
      scope.postMessage({ type: 'ready' });
    } else {
      if (!unet) throw new Error('no U-Net: "load" first');
      const out = unet.forward(m.sample, m.shape, m.timesteps, m.labels);
      scope.postMessage({ type: 'result', out }, [out.buffer]);
    }
  } catch (err) {
    broken ||= trapReason(err, 'a wasm heap');
    if (broken) unet = null;
    scope.postMessage({ type: 'error', message: broken || errorMessage(err) });
  }
};
