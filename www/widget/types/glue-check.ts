// `npm run typecheck` with a build in www/pkg (tsconfig.pkg.json): each declaration of the
// checked-in types/ddim_webgpu.d.ts holds for the glue wasm-bindgen wrote. An assignment below
// fails where the real glue lacks a class, method or function declared there, or declares it
// with other parameters or results (its `any` results stand for the narrower types declared here).
import type * as Real from '../../pkg/ddim_webgpu.js';
import type * as Ours from './ddim_webgpu.js';

declare const real: {
  DiffusionSampler: typeof Real.DiffusionSampler;
  sampler: Real.DiffusionSampler;
  UNetWorker: typeof Real.UNetWorker;
  unet: Real.UNetWorker;
  setWorkerFactory: typeof Real.setWorkerFactory;
  setThreadsWorkerFactory: typeof Real.setThreadsWorkerFactory;
  forkWorker: typeof Real.forkWorker;
  benchmarkConfig: typeof Real.benchmarkConfig;
  init: typeof Real.default;
  initOutput: Real.InitOutput;
};

export const glue: {
  create: typeof Ours.DiffusionSampler.create;
  sampler: Ours.DiffusionSampler;
  UNetWorker: typeof Ours.UNetWorker;
  unet: Ours.UNetWorker;
  setWorkerFactory: typeof Ours.setWorkerFactory;
  setThreadsWorkerFactory: typeof Ours.setThreadsWorkerFactory;
  forkWorker: typeof Ours.forkWorker;
  benchmarkConfig: typeof Ours.benchmarkConfig;
  init: typeof Ours.default;
  initOutput: Ours.InitOutput;
} = {
  create: real.DiffusionSampler.create,
  sampler: real.sampler,
  UNetWorker: real.UNetWorker,
  unet: real.unet,
  setWorkerFactory: real.setWorkerFactory,
  setThreadsWorkerFactory: real.setThreadsWorkerFactory,
  forkWorker: real.forkWorker,
  benchmarkConfig: real.benchmarkConfig,
  init: real.init,
  initOutput: real.initOutput,
};
