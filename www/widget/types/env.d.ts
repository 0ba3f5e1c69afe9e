// Ambient declarations for `npm run typecheck` (not shipped): the few WebGPU types the widget's
// JS uses (TypeScript's DOM library has none, and the package takes no @webgpu/types
// dependency for a dozen members), and a dedicated worker's global scope for the worker
// modules (the DOM library types `self` as a Window).

interface GPUAdapterInfo {
  readonly vendor: string;
  readonly architecture: string;
  readonly description: string;
  readonly isFallbackAdapter?: boolean;
}

interface GPUAdapter {
  /** Older browsers: absent. */
  readonly info?: GPUAdapterInfo;
  requestDevice(): Promise<GPUDevice>;
}

interface GPUDevice {
  readonly lost: Promise<unknown>;
  readonly queue: GPUQueue;
  createCommandEncoder(): GPUCommandEncoder;
  destroy(): void;
}

interface GPUQueue {
  submit(buffers: GPUCommandBuffer[]): void;
  onSubmittedWorkDone(): Promise<void>;
}

interface GPUCommandBuffer {
  readonly __brand: 'GPUCommandBuffer';
}

interface GPUCommandEncoder {
  beginRenderPass(descriptor: {
    colorAttachments: { view: GPUTextureView; loadOp: 'clear' | 'load'; storeOp: 'store' | 'discard'; clearValue?: number[] }[];
  }): { end(): void };
  finish(): GPUCommandBuffer;
}

interface GPUTextureView {
  readonly __brand: 'GPUTextureView';
}

interface GPUCanvasContext {
  configure(configuration: { device: GPUDevice; format: string; alphaMode?: 'opaque' | 'premultiplied' }): void;
  getCurrentTexture(): { createView(): GPUTextureView };
}

interface GPU {
  requestAdapter(): Promise<GPUAdapter | null>;
  getPreferredCanvasFormat(): string;
}

interface Navigator {
  /** Absent where the browser has no WebGPU. */
  readonly gpu?: GPU;
}

interface HTMLCanvasElement {
  getContext(contextId: 'webgpu'): GPUCanvasContext | null;
}

/** A dedicated worker's global scope, as far as the worker modules use it. */
interface WorkerSelf {
  onmessage: ((event: MessageEvent) => unknown) | null;
  postMessage(message: unknown, transfer?: Transferable[]): void;
  requestAnimationFrame?: (callback: FrameRequestCallback) => number;
  readonly crossOriginIsolated: boolean;
}
