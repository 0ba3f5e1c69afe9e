// The part of the threaded build's glue (www/pkg/threads/ddim_webgpu.js) that cpu-worker-threads.js
// and fork-worker.js use: the same exports as the unthreaded glue (../ddim_webgpu.d.ts), and an
// initSync that takes the memory to share. As for ../ddim_webgpu.d.ts, tsconfig.pkg.json checks
// the workers against the real declarations once a build has written them.
import type { InitOutput } from '../ddim_webgpu.js';

export { UNetWorker, benchmarkConfig, engineMemory, engineModule, forkWorker, forkWorkerFailed } from '../ddim_webgpu.js';
export { default } from '../ddim_webgpu.js';

export function initSync(module: { module: BufferSource | WebAssembly.Module; memory?: WebAssembly.Memory; thread_stack_size?: number }): InitOutput;
