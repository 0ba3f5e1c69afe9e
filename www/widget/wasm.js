// Loads this thread's copy of the wasm module: the relaxed-SIMD build where the browser validates
// f32x4.relaxed_madd (the CPU engine's GEMM then does one fused multiply-add where simd128 needs a
// multiply and an add), the simd128 build everywhere else and if the relaxed file cannot be loaded.
// The page compiles the module once and hands it to its CPU workers (cpu-worker.js): one compile
// instead of one per thread, and the workers share its machine code as V8 tiers it up.

// A one-function module: (v128, v128, v128) → f32x4.relaxed_madd.
const RELAXED_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1, 0,
  10, 13, 1, 11, 0, 32, 0, 32, 1, 32, 2, 253, 133, 2, 11]);

/** Whether this browser runs the relaxed-SIMD build. */
export const relaxedSimd = (() => { try { return WebAssembly.validate(RELAXED_PROBE); } catch { return false; } })();

/** @param {URL} url @returns {Promise<WebAssembly.Module>} */
async function compile(url) {
  let resp;
  try { resp = await fetch(url); } catch (e) { throw new Error(`${url}: fetch failed (${/** @type {any} */ (e)?.message || e})`); }
  if (!resp.ok) throw new Error(`failed to fetch Wasm: ${resp.status} ${resp.statusText} fetching '${url}'`);
  // Streaming compilation needs the application/wasm type; another type is compiled from the bytes.
  if (typeof WebAssembly.compileStreaming === 'function' && resp.headers.get('Content-Type') === 'application/wasm') {
    return WebAssembly.compileStreaming(resp);
  }
  return WebAssembly.compile(await resp.arrayBuffer());
}

/** @type {Promise<WebAssembly.Module> | null} */
let compiled = null;
/**
 * This thread's compiled module (a WebAssembly.Module), fetched and compiled once (URLs written out literally for bundlers).
 * @returns {Promise<WebAssembly.Module>}
 */
export function wasmModule() {
  compiled ??= (async () => {
    if (relaxedSimd) {
      try {
        return await compile(new URL('./ddim_webgpu_relaxed_bg.wasm', import.meta.url));
      } catch (e) {
        console.warn(`ddim-webgpu: the relaxed-SIMD build did not load (${/** @type {any} */ (e)?.message || e}); using the simd128 build`);
      }
    }
    return compile(new URL('./ddim_webgpu_bg.wasm', import.meta.url));
  })();
  compiled.catch(() => { compiled = null; }); // a failed download may be retried
  return compiled;
}

/**
 * Initialises wasm-bindgen's `init` with `module` (one compiled elsewhere), else this thread's `wasmModule()`.
 * @param {typeof import('./ddim_webgpu.js').default} init
 * @param {WebAssembly.Module} [module]
 */
export async function initWasm(init, module) {
  return init({ module_or_path: module ?? await wasmModule() });
}

/** @param {unknown} err @returns {string} an error's message, or the thrown value as text */
export function errorMessage(err) {
  return String((err && /** @type {any} */ (err).message) || err);
}

/**
 * Why a worker's WebAssembly can no longer run, where `err` is a trap (out of memory, or a crash), else ''.
 * A trap leaves the instance's heap in an unknown state (a failed memory.grow aborts the allocator):
 * the CPU workers answer every later message with this reason, never a wrong result.
 * @param {unknown} err
 * @param {string} heap what the worker's heap is, for the message ("a wasm heap", "a shared wasm heap")
 */
export function trapReason(err, heap) {
  if (!(err instanceof WebAssembly.RuntimeError)) return '';
  return `the CPU engine's worker stopped: its WebAssembly trapped (${errorMessage(err)}), most likely out of memory (${heap} holds at most 4 GiB); reload the model with a smaller batch or model`;
}
