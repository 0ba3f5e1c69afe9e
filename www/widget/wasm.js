// Loads this thread's copy of the wasm module: the relaxed-SIMD build where the browser validates
// f32x4.relaxed_madd (the CPU engine's GEMM then does one fused multiply-add where simd128 needs a
// multiply and an add), the simd128 build everywhere else and if the relaxed file cannot be loaded.

// A one-function module: (v128, v128, v128) → f32x4.relaxed_madd.
const RELAXED_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1, 0,
  10, 13, 1, 11, 0, 32, 0, 32, 1, 32, 2, 253, 133, 2, 11]);

/** Whether this browser runs the relaxed-SIMD build. */
export const relaxedSimd = (() => { try { return WebAssembly.validate(RELAXED_PROBE); } catch { return false; } })();

/** Initialises wasm-bindgen's `init` with the best build (URLs written out literally for bundlers). */
export async function initWasm(init) {
  if (relaxedSimd) {
    try {
      return await init({ module_or_path: new URL('./ddim_webgpu_relaxed_bg.wasm', import.meta.url) });
    } catch (e) {
      console.warn(`ddim-webgpu: the relaxed-SIMD build did not load (${e.message || e}); using the simd128 build`);
    }
  }
  return init({ module_or_path: new URL('./ddim_webgpu_bg.wasm', import.meta.url) });
}
