// The part of the wasm-bindgen glue (www/pkg/ddim_webgpu.js, written by ./build.sh) that the
// widget's JS uses, declared here so `npm run typecheck` works before any build. The widget's
// tsconfig.json finds it through "rootDirs" as './ddim_webgpu.js'. Where a build left the real
// declarations (www/pkg/ddim_webgpu.d.ts), tsconfig.pkg.json checks the widget's JS against them
// instead, and glue-check.ts that each declaration here agrees with the real one. The types are
// narrower than wasm-bindgen's (which says `any` for every JsValue): what src/web/mod.rs returns.
import type { ClassifierInfo, FilmFrame, FrameInfo, ModelInfo, RunOptions, RunResult, SampleImage, SamplerStats } from '../index.js';

/** The options DiffusionSampler.run reads: the package's RunOptions, with `classLabel` for `label`. */
type RawRunOptions = Omit<RunOptions, 'label' | 'signal'>;

export class DiffusionSampler {
  private constructor();
  free(): void;
  /** `canvas`: a <canvas> or an OffscreenCanvas (in a worker); `presents`: whether the browser can present a WebGPU canvas (undefined: probe). */
  static create(canvas: HTMLCanvasElement | OffscreenCanvas, config_json: string, weights: Uint8Array, scheduler_json: string | null | undefined, engine: string, presents?: boolean | null): Promise<DiffusionSampler>;
  readonly adapter: string;
  modelInfo(): ModelInfo;
  cancel(): void;
  destroy(): void;
  stats(): SamplerStats;
  loseDeviceForTest(): boolean;
  /** Throws an Error naming the field, tensor or file of a bad classifier. */
  loadClassifier(config_json: string, weights: Uint8Array): ClassifierInfo;
  loadClassifierFromUrl(base_url: string): Promise<ClassifierInfo>;
  /** Rejects with Error("cancelled") when cancelled; resolves with {reconstruction} for "invert". */
  run(options: RawRunOptions, on_step?: ((frame: FrameInfo) => unknown) | null): Promise<RunResult | undefined>;
  lastImage(): SampleImage | null;
  lastSample(): Float32Array | undefined;
  lastLatent(): Float32Array | undefined;
  filmLength(): number;
  filmFrame(k: number): FilmFrame | null;
}

export class UNetWorker {
  free(): void;
  constructor(config_json: string, weights: Uint8Array);
  forward(sample: Float32Array, shape: Uint32Array, timesteps: Float32Array, labels?: Uint32Array | null): Float32Array;
  setThreads(threads: number): void;
  threads(): number;
  setSplit(threads: number, min_share_forks: number): void;
  kernel(): string;
}

export function setWorkerFactory(factory: () => Worker): void;
/** src/web/bench.rs: `{engine, what, params, weightsBytes, msPerForward, memoryBytes}` on seeded random weights. */
export function benchmarkConfig(config_json: string, engine: string, batch: number, reps: number): Promise<unknown>;
export function setThreadsWorkerFactory(factory: () => Worker): void;
/** This instance's memory (shared in the threaded build). */
export function engineMemory(): WebAssembly.Memory;
/** This instance's compiled module. */
export function engineModule(): WebAssembly.Module;
/** A fork worker of the threaded build: never returns (throws in the unthreaded builds). */
export function forkWorker(): void;
/** A fork worker's instance trapped: the engine's pool is marked broken (its forward then fails, named). */
export function forkWorkerFailed(): void;

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
  readonly memory: WebAssembly.Memory;
}

export default function __wbg_init(module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;
