// Hand-written declarations of ddim-webgpu's public surface (the wasm-bindgen ones describe only
// the raw DiffusionSampler underneath). `npm run typecheck` checks the JS (sampler.js, element.js)
// against them: tsconfig.json in this folder.

export type EngineRequest = 'auto' | 'webgpu' | 'cpu' | `cpu:${number}`;
export type EngineName = 'webgpu' | 'cpu';

export interface EngineChoice {
  /** The engine that runs: "webgpu", or "cpu" / "cpu:N" (N workers) for the CPU engine. */
  engine: string;
  /** Why, in a sentence a page can show. */
  reason: string;
}

export interface ModelInfo {
  parameters: number;
  sampleSize: number | undefined;
  inChannels: number;
  /** Class-conditional models: number of classes including the null class. */
  numClassEmbeds: number | undefined;
  /** "F32" or "F16" (as stored; fp16 stays fp16 in transfer). */
  storedDtype: string;
  /** Where the scheduler config came from (or that diffusers' defaults are used). */
  scheduler: string;
  /** The samplers this model can run (`sampler` option values), its own scheduler's among them. */
  samplers: string[];
  /** The sampler of the model's own scheduler config (`ddim` where it names none). */
  defaultSampler: string;
  /** ᾱ_t of the model's scheduler config over the train timesteps (for plotting the schedule). */
  alphasCumprod: Float32Array;
  /** The classifier loaded for classifier guidance (`Sampler.loadClassifier`), or null. */
  classifier: ClassifierInfo | null;
}

/** A noise-aware classifier p(y | x_t, t) loaded for classifier guidance. */
export interface ClassifierInfo {
  parameters: number;
  numClasses: number;
  sampleSize: number;
  inChannels: number;
}

/** A classifier's files by URL (docs/classifier.md has the format). */
export interface ClassifierUrls {
  config: string;
  weights: string;
}

/** A classifier's files as text and bytes. */
export interface ClassifierFiles {
  config: string;
  weights: Uint8Array;
}

export interface ModelFiles {
  config: string;
  weights: Uint8Array;
  scheduler?: string;
}

export interface LoadProgress {
  loaded: number;
  /** 0 when the server sends no Content-Length. */
  total: number;
  fromCache: boolean;
}

export interface RunOptions {
  steps?: number;
  eta?: number;
  /** rtol = atol of the adaptive ODE solver (`sampler: "vp-ode-rk45"`); default 1e-5. */
  tolerance?: number;
  seed?: number;
  /** A name of `modelInfo.samplers` (ddim, ddpm, dpm++2m, euler, heun fused; pndm, lms, euler-ancestral, unipc, …, vp-sde, vp-ode, vp-pc, vp-ode-rk45 stepped on the host) or a diffusers class name; the model's own scheduler (`modelInfo.defaultSampler`) when absent. */
  sampler?: 'ddim' | 'ddpm' | 'dpm++2m' | 'euler' | 'heun';
  batch?: number;
  /** One class for every item, or one per item (class-conditional models). */
  label?: number | number[];
  /** The same as `label` (the engine's own name for it); `label` wins where both are given. */
  classLabel?: number | number[];
  guidance?: number;
  /** Classifier guidance (Dhariwal & Nichol): ε̂ − s·σ_t·∇ₓ log p(y | x_t, t) with the classifier of `loadClassifier()`; 0 (default): none. */
  classifierScale?: number;
  /** The class classifier guidance steers towards (default: `label` where the classifier has it, else 0, 1, 2, … mixed).
   * `label: 10, classifierClass: 3` makes the bundled model's unconditional run (the null class) a 3. */
  classifierClass?: number;
  /** What the canvas shows: x_t, the predicted x̂₀, or on a signed colour map (blue, white, red) the predicted noise ε̂ (±3),
   * classifier-free guidance's parts: ε(c), ε(∅) (±3) and the guidance term w·(ε(c) − ε(∅)) (±0.5; the last two need guidance > 0),
   * or classifier guidance's term s·σ_t·∇ₓ log p(y | x_t, t), what the classifier pushes towards (±0.5; needs classifierScale > 0). */
  view?: ViewName;
  /** Several views side by side on the canvas, left to right (4 px apart), each drawn every step — on the WebGPU engine by
   * the render pass from the engine's buffers, no readback: an array or a comma-separated string ("xt,eps,x0,guidance").
   * Give `view` or `views`, not both. */
  views?: ViewName[] | string;
  /** Views whose values each frame carries as a Float32Array [N, C, H, W] under the view's name (`frame.eps`, `frame.x0`, …;
   * on WebGPU each is read back per frame). */
  arrays?: ViewName[] | string;
  /** Branching: keep the engine's state (x_t, x̂₀, the solver's history) after every evaluation as a node (`frame.node`), so a
   * later run can `resume` from it. Nodes past `branchBudgetMB` (default 64) are dropped oldest first (`frame.dropped`). */
  branch?: boolean;
  branchBudgetMB?: number;
  /** A node's id (`frame.node`): this run starts from that node's state. Keeping the sampler and its steps it continues at the
   * node's next evaluation — changing nothing else, it ends on the unforked run's image exactly; the class, guidance,
   * classifier guidance, η and the seed of the noise still to come may change. Another sampler (or step count) continues
   * at the node's noise level with its remaining steps, started afresh there (as diffusers' img2img starts a sampler); it
   * must have a step at that level. The batch must stay. */
  resume?: number;
  /**
   * sample (default): from noise. edit: SDEdit (diffusers img2img) of `image` at `strength`, its
   * noising shown first. inpaint: RePaint, keeps `image` where `mask` is 1 and fills where it is 0.
   * invert: DDIM inversion of `image` to x_T (`lastLatent()`), then DDIM back down; the error is in
   * `lastResult()`. forward: the forward process q(x_t | x0) on `image` up to `tEnd` in `steps`
   * frames. interpolate: slerp between the x_T `from` and `to` (seeds or latents), `batch` frames.
   */
  mode?: 'sample' | 'edit' | 'inpaint' | 'invert' | 'forward' | 'interpolate';
  /** Images in −1 … 1 of the model's size, [N or 1, C, H, W] flattened. */
  image?: Float32Array;
  /** edit: 0 < strength ≤ 1; the last int(steps × strength) steps run. */
  strength?: number;
  /** inpaint: one-channel masks [N or 1, 1, H, W] flattened; 1 keeps the image, 0 is filled. */
  mask?: Float32Array;
  /** inpaint: RePaint's jump length j and resampling count r (diffusers' defaults: 10, 10). */
  jumpLength?: number;
  jumpNSample?: number;
  /** forward: the last timestep shown (default 999). */
  tEnd?: number;
  /** interpolate: each end, a seed or an x_T (e.g. `lastLatent()` of an inversion). */
  from?: number | Float32Array;
  to?: number | Float32Array;
  /** Give each frame its numbers (`FrameInfo.numbers`; on WebGPU x_t and x̂₀ are read back per frame). */
  numbers?: boolean;
  /** Keep every frame (x_t and x̂₀) for `film()` (on WebGPU each frame is read back). */
  record?: boolean;
  /** Ends the run within one step; run() then throws the signal's reason (an AbortError). */
  signal?: AbortSignal;
}

export interface FrameInfo {
  step: number;
  total: number;
  timestep: number;
  /** forward: the image noised (no U-Net); reverse: denoising; inversion: towards noise. */
  phase: 'forward' | 'reverse' | 'inversion';
  /** Milliseconds this step took. */
  ms: number;
  /** With `numbers: true` (denoising frames): the step's σ_t = √(1 − ᾱ_t) and log-SNR on the model's
   * schedule, ‖x_t‖ and ‖x̂₀ − x̂₀(previous frame)‖ (L2 over an image, averaged over the batch; null at the first frame). */
  numbers?: { sigma: number; logSnr: number; xNorm: number; x0Change: number | null };
  /** With `branch: true`: this evaluation's node, the node it grew from (null for a run's first), and the nodes dropped
   * for the budget at this frame. */
  node?: number;
  parent?: number | null;
  dropped?: number[];
  /** With `arrays`: each view asked for, [N, C, H, W] flattened. */
  xt?: Float32Array;
  x0?: Float32Array;
  eps?: Float32Array;
  eps_cond?: Float32Array;
  eps_uncond?: Float32Array;
  guidance?: Float32Array;
  classifier?: Float32Array;
}

/** What a canvas can show: x_t, x̂₀, the predicted noise, classifier-free guidance's parts, classifier guidance's term. */
export type ViewName = 'xt' | 'x0' | 'eps' | 'eps_cond' | 'eps_uncond' | 'guidance' | 'classifier';

/** A recorded frame (`record: true`): RGBA grids of x_t and of the predicted clean image. */
export interface FilmFrame {
  timestep: number;
  phase: 'forward' | 'reverse' | 'inversion';
  width: number;
  height: number;
  xt: Uint8ClampedArray;
  x0: Uint8ClampedArray;
}

export interface RunResult {
  /** invert: the reconstruction's error against the image (images in −1 … 1; PSNR over the range 2). */
  reconstruction?: { rmse: number; maxError: number; psnr: number };
}

export interface SamplerStats {
  gpuBuffers: number;
  gpuBytes: number;
  destroyed: boolean;
}

export interface SampleImage {
  width: number;
  height: number;
  data: Uint8ClampedArray;
}

/**
 * A model bound to a canvas on one engine (made by createSampler): the same surface whether the
 * engine runs on the page's thread or in a Web Worker (`thread`).
 */
export interface Sampler {
  readonly engine: EngineName;
  readonly reason: string;
  readonly adapter: string;
  readonly modelInfo: ModelInfo;
  /** Where the engine runs: "worker" (a module Web Worker on an OffscreenCanvas) or "main". */
  readonly thread: 'main' | 'worker';
  /** Why the engine runs on that thread, in a sentence a page can show. */
  readonly threadReason: string;
  /** True once destroy() was called. */
  readonly destroyed: boolean;
  /**
   * Samples (or edits, inverts, …: `mode`); yields each step's FrameInfo once the canvas shows it.
   * One run at a time. A lost GPU device ends it with "… the GPU device was lost …"; the next run
   * makes a new device on the same canvas.
   */
  run(options?: RunOptions): AsyncGenerator<FrameInfo, void, undefined>;
  /** Ends the run in progress within one step (run() then throws Error("cancelled")). */
  stop(): void;
  /**
   * Loads a noise-aware classifier for classifier guidance: a folder URL (config.json and
   * model.safetensors), {config, weights} URLs, or {files}; the bundled digit classifier by default.
   * Also sets `modelInfo.classifier`. Not while a run is in progress.
   */
  loadClassifier(classifier?: string | ClassifierUrls | { files: ClassifierFiles }): Promise<ClassifierInfo>;
  /** The last finished sample as an RGBA grid of the batch. */
  lastImage(): SampleImage | null;
  /** The last finished sample's values ([N, C, H, W] flattened, −1 … 1): an `image` for the next edit. */
  lastSample(): Float32Array | null;
  /** The x_T of the last inversion. */
  lastLatent(): Float32Array | null;
  /** What the last finished run reported (the reconstruction error of an inversion). */
  lastResult(): RunResult | null;
  /** The frames of the last run made with `record: true`. */
  film(): FilmFrame[];
  /** GPU buffers this sampler holds (0 on the CPU engine and once destroyed), for leak checks. */
  stats(): SamplerStats;
  /** Frees the GPU device (every buffer) or the Web Workers, and the model's memory; a run in progress ends. */
  destroy(): void;
}

export interface CreateSamplerOptions {
  /** A fresh canvas (a canvas keeps the first context it is given). */
  canvas: HTMLCanvasElement;
  /**
   * URL of a diffusers model folder, its files' URLs, or a Hugging Face Hub id
   * `hf:owner/name[@revision]` (a pipeline repo's unet/ and scheduler/ are found by themselves);
   * the bundled model by default.
   */
  model?: string | ModelUrls;
  /** Where `hf:` ids are downloaded from (a Hub mirror); https://huggingface.co by default. */
  hubEndpoint?: string;
  /** The model's bytes instead of a URL, or a promise of them (loadModel() started early, beside chooseEngine()). */
  files?: ModelFiles | Promise<ModelFiles>;
  /** What to run on, or an EngineChoice already made by chooseEngine() (no second adapter request). */
  engine?: EngineRequest | EngineChoice;
  onProgress?: (p: LoadProgress) => void;
  /** Keep downloaded weights in Cache Storage (default true). */
  cache?: boolean;
  /** "auto" (default): the engine in a Web Worker where possible; "main": on the page's thread. */
  thread?: 'auto' | 'main';
}

/** One URL per file of a model. */
export interface ModelUrls {
  config: string;
  weights: string;
  /** Optional: diffusers' defaults when absent or 404. */
  scheduler?: string;
}

/** A Hugging Face Hub model repo at a revision, as parsed from `hf:owner/name[@revision]`. */
export interface HubId {
  owner: string;
  name: string;
  /** A branch, tag or commit; "main" unless given. */
  revision: string;
}

/** The bundled model's file URLs (resolved relative to the package). */
export declare const DEFAULT_MODEL: Readonly<ModelUrls>;
/** The bundled noise-aware digit classifier's files (for `Sampler.loadClassifier`). */
export declare const DEFAULT_CLASSIFIER: Readonly<ClassifierUrls>;
/** Where `hf:` ids resolve unless a `hubEndpoint` is given: https://huggingface.co. */
export declare const HUB_ENDPOINT: string;
/**
 * Parses `hf:owner/name[@revision]` with huggingface_hub's repo id rules (letters, digits, `-`,
 * `_`, `.`; no part starting or ending with `-` or `.`; no `--` or `..`); throws an Error naming
 * the id and what is wrong.
 */
export declare function parseHubId(source: string): HubId;
/**
 * A folder URL expanded to its files, a Hub id to its resolve URLs
 * (`{hubEndpoint}/{owner}/{name}/resolve/{revision}/config.json`, …; with `pipeline: true` the
 * unet/ and scheduler/ files of a pipeline repo), or the URLs as given.
 */
export declare function modelUrls(model?: string | ModelUrls, options?: { hubEndpoint?: string; pipeline?: boolean }): ModelUrls;
/** Loads and instantiates the wasm module on this thread, once (createSampler does it too: call it to start early). */
export declare function ready(): Promise<unknown>;
/**
 * Which engine runs, and why. auto (default): WebGPU on a real adapter, else the CPU engine (no
 * WebGPU, no adapter, or only a fallback one). "webgpu" that cannot be met rejects, saying why.
 */
export declare function chooseEngine(requested?: EngineRequest): Promise<EngineChoice>;
/**
 * A model's files (a folder URL, one URL per file, or a Hub id `hf:owner/name[@revision]`, whose
 * model_index.json is asked for first to find a pipeline's unet/; the bundled model by default),
 * downloaded with progress and kept in Cache Storage.
 */
export declare function loadModel(model?: string | ModelUrls, options?: { onProgress?: (p: LoadProgress) => void; cache?: boolean; hubEndpoint?: string }): Promise<ModelFiles>;
/** Loads the model and builds a Sampler on `canvas` (its engine in a Web Worker where the browser allows). */
export declare function createSampler(options: CreateSamplerOptions): Promise<Sampler>;
/** Samplers not yet destroyed, their GPU buffers and bytes, and the page-thread wasm heap size (leak checks). */
export declare function liveStats(): { samplers: number; gpuBuffers: number; gpuBytes: number; wasmHeapBytes: number };

/** The element's own events (`load` and `error` here replace the generic DOM ones). */
export interface DdimSamplerEventMap {
  load: CustomEvent<{ modelInfo: ModelInfo; engine: EngineName; reason: string; adapter: string; thread: 'main' | 'worker'; threadReason: string }>;
  progress: CustomEvent<LoadProgress>;
  frame: CustomEvent<FrameInfo>;
  done: CustomEvent<{ ms: number; steps: number }>;
  error: CustomEvent<{ message: string }>;
}

/**
 * <ddim-sampler>. Attributes (all optional): model (folder URL or hf:owner/name[@revision]; the
 * bundled model by default), hub-endpoint (a Hub mirror for hf: ids), engine
 * (an EngineRequest), steps, eta, seed, batch, label, guidance, sampler, view (as RunOptions),
 * autoplay. Changing model, hub-endpoint or engine stops the run; the next start() loads them. Removing the element stops its
 * run and frees its GPU device or workers.
 */
export declare class DdimSamplerElement extends HTMLElement {
  /** The Sampler in use (null before the first start). */
  readonly sampler: Sampler | null;
  /** Starts a run (stopping one in progress); resolves when it ends, rejects with its error (which fires `error` too). */
  start(): Promise<void>;
  /** Ends the run in progress within one step; resolves once it has stopped. */
  stop(): Promise<void>;
  addEventListener<K extends keyof DdimSamplerEventMap>(type: K, listener: (this: DdimSamplerElement, ev: DdimSamplerEventMap[K]) => unknown, options?: boolean | AddEventListenerOptions): void;
  addEventListener<K extends Exclude<keyof HTMLElementEventMap, keyof DdimSamplerEventMap>>(type: K, listener: (this: DdimSamplerElement, ev: HTMLElementEventMap[K]) => unknown, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof DdimSamplerEventMap>(type: K, listener: (this: DdimSamplerElement, ev: DdimSamplerEventMap[K]) => unknown, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | EventListenerOptions): void;
}

declare global {
  interface HTMLElementTagNameMap {
    'ddim-sampler': DdimSamplerElement;
  }
}
