//! The browser API (wasm-bindgen): a `DiffusionSampler` bound to a `<canvas>`, running either the
//! WebGPU engine (frames drawn straight from the GPU into the canvas texture) or the CPU engine
//! (the Rust reference compiled to wasm, frames put into a 2D canvas). Both run through the run
//! layer (`crate::run`). Every failure becomes a JS `Error` carrying the engine's message.
//!
//! Files: `mod.rs` the JS API, `options.rs` the JS options object, `canvas.rs` presentation and
//! readback, `fetch.rs` fetching a model folder.

mod bench;
mod canvas;
mod fetch;
mod options;
mod workers;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::classifier::Classifier;
use crate::engines::EngineChoice;
use crate::event_loop::sleep_ms;
use crate::gpu::draw::SampleDrawer;
use crate::gpu::engine::GpuEngine;
use crate::image_grid::{grid_cols, grid_rgba};
use crate::reference::profile::now_ms;
use crate::run::branch::{EngineState, Node};
use crate::run::numbers::{NumbersTracker, StepNumbers};
use crate::run::{self, CpuEngine, Engine, Flow, Phase, RunPlan, StepInfo, View};
use crate::{Error, Model, Tensor};
pub use bench::benchmark_config;
use canvas::{gpu_for_canvas, new_gpu_for_target, put_image, Canvas, Context2d, FrameTarget, SurfaceFrames};
pub use options::read as read_run_options;
pub use workers::UNetWorker;
use workers::{WorkerEngine, WorkerKind};

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// {parameters, numClasses, sampleSize, inChannels} of a loaded classifier.
fn classifier_info(clf: &Classifier) -> JsValue {
    let o = Object::new();
    for (k, v) in [
        ("parameters", clf.parameters),
        ("numClasses", clf.config.num_classes),
        ("sampleSize", clf.config.sample_size),
        ("inChannels", clf.config.in_channels),
    ] {
        let _ = Reflect::set(&o, &k.into(), &(v as f64).into());
    }
    o.into()
}

fn js_err(e: Error) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

/// The engine a sampler runs on.
enum EngineKind {
    WebGpu {
        engine: Box<GpuEngine>,
        target: FrameTarget,
    },
    /// The fast CPU engine in Web Workers (the page's CPU engine).
    Workers(WorkerEngine),
    /// The fast CPU engine on this thread (where workers cannot start).
    Cpu(CpuEngine),
    /// After `destroy()`: the device or workers are gone.
    Destroyed,
}

struct Inner {
    model: Model,
    canvas: Canvas,
    engine: RefCell<EngineKind>,
    adapter: String,
    cancel: Cell<bool>,
    running: Cell<bool>,
    destroyed: Cell<bool>,
    /// The WebGPU engine's buffer counts (`stats()`) and device (the loss test hook), reachable
    /// while a run holds the engine.
    gpu: RefCell<Option<GpuHandles>>,
    last: RefCell<Option<Tensor>>,
    /// The x_T of the last inversion (`lastLatent`).
    latent: RefCell<Option<Tensor>>,
    /// Every frame of the last run, when it was asked to `record` (`filmFrame`).
    film: RefCell<Vec<FilmFrame>>,
    /// The classifier of classifier guidance (kept to load it again onto a renewed device).
    classifier: RefCell<Option<Classifier>>,
    /// The nodes kept by branching runs (`branch: true`), which later runs resume from.
    branches: RefCell<Branches>,
    /// The canvas's 2D context, asked for once: Firefox answers a second `getContext("2d")` on a
    /// worker's OffscreenCanvas with null (a second run of one sampler in the engine worker failed).
    ctx2d: RefCell<Option<Context2d>>,
}

impl Inner {
    fn context_2d(&self) -> Result<Context2d, Error> {
        if let Some(ctx) = self.ctx2d.borrow().as_ref() {
            return Ok(ctx.clone());
        }
        let ctx = self.canvas.context_2d()?;
        *self.ctx2d.borrow_mut() = Some(ctx.clone());
        Ok(ctx)
    }
}

/// The nodes of branching runs, oldest first, within the budget of the run that keeps them.
#[derive(Default)]
struct Branches {
    nodes: VecDeque<(u64, Arc<Node>)>,
    next: u64,
    bytes: usize,
}

impl Branches {
    /// Keeps `node`; drops the oldest nodes while all of them hold more than `budget` bytes (the
    /// newest stays). Returns its id and the ids dropped.
    fn keep(&mut self, node: Node, budget: usize) -> (u64, Vec<u64>) {
        let id = self.next;
        self.next += 1;
        self.bytes += node.state.bytes();
        self.nodes.push_back((id, Arc::new(node)));
        let mut dropped = Vec::new();
        while self.bytes > budget && self.nodes.len() > 1 {
            let (old, n) = self.nodes.pop_front().expect("more than one node");
            self.bytes -= n.state.bytes();
            dropped.push(old);
        }
        (id, dropped)
    }

    fn get(&self, id: u64) -> Result<Arc<Node>, Error> {
        self.nodes.iter().find(|(k, _)| *k == id).map(|(_, n)| n.clone()).ok_or_else(|| {
            Error::Input(format!("resume: node {id} is not kept (dropped for the branching memory budget, or not made by this sampler)"))
        })
    }
}

/// What each frame of a run carries besides its step: the recorded film, the numbers row, the
/// arrays asked for, and a branching run's node.
struct FrameAsk {
    record: bool,
    numbers: Option<NumbersTracker>,
    arrays: Vec<View>,
    /// The node budget in bytes of a branching run.
    branch: Option<usize>,
    /// The node the next frame's node grows from.
    parent: Option<u64>,
}

/// One recorded frame: x_t and x̂₀ (for forward frames: the clean image) on the host.
struct FilmFrame {
    timestep: i64,
    phase: Phase,
    xt: Tensor,
    x0: Tensor,
}

/// Shared handles of the WebGPU engine's device: its buffer ledger and the device itself.
struct GpuHandles {
    live: std::sync::Arc<crate::gpu::LiveBuffers>,
    device: wgpu::Device,
}

impl GpuHandles {
    fn of(engine: &GpuEngine) -> Self {
        GpuHandles { live: engine.gpu().live(), device: engine.gpu().device.clone() }
    }
}

impl Inner {
    /// Frees the GPU device (every buffer and pipeline at once: on the web, dropping wgpu objects
    /// waits for garbage collection) or terminates the workers.
    fn free_engine(&self) {
        let old = std::mem::replace(&mut *self.engine.borrow_mut(), EngineKind::Destroyed);
        if let EngineKind::WebGpu { engine, .. } = &old {
            engine.gpu().destroy();
        }
    }
}

/// A diffusion model bound to a canvas; samples with DDIM or DDPM.
#[wasm_bindgen]
pub struct DiffusionSampler {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl DiffusionSampler {
    /// Loads `config.json`, the safetensors weights and `scheduler_config.json` (diffusers'
    /// defaults if it is absent: `modelInfo().scheduler` says so) from `base_url`, a diffusers
    /// model folder served over HTTP. `engine` is "webgpu", "cpu" (Web Workers, one per core up to
    /// 4) or "cpu:N" (N workers).
    #[wasm_bindgen(js_name = fromUrl)]
    pub async fn from_url(canvas: web_sys::HtmlCanvasElement, base_url: String, engine: String) -> Result<DiffusionSampler, JsValue> {
        let (config, weights, sched) = fetch::model_folder(&base_url).await.map_err(js_err)?;
        Self::create(canvas.into(), config, weights, sched, engine, None).await
    }

    /// Builds a sampler from the bytes of a diffusers model folder. `canvas` is a `<canvas>` or an
    /// `OffscreenCanvas` (in a Web Worker); `presents` says whether this browser can present
    /// WebGPU canvases (undefined: probe it here, which needs a document).
    pub async fn create(
        canvas: JsValue,
        config_json: String,
        weights: Vec<u8>,
        scheduler_json: Option<String>,
        engine: String,
        presents: Option<bool>,
    ) -> Result<DiffusionSampler, JsValue> {
        let canvas = Canvas::from_js(canvas).map_err(js_err)?;
        // CPU workers are sent the model first: they parse, check and pack the weights, while this
        // thread reads the header only (every check but the data's) and keeps no copy of them. Its
        // own parse used to compete with the workers' for the cores, before the first frame.
        let choice: EngineChoice = engine.parse().map_err(js_err)?;
        let workers = cpu_workers(choice);
        let loading = workers.map(|w| WorkerEngine::start(&config_json, &weights, w));
        let parse = |header_only| match header_only {
            true => Model::without_weight_data(&config_json, &weights, scheduler_json.as_deref()),
            false => Model::from_bytes(&config_json, &weights, scheduler_json.as_deref()),
        };
        let model = parse(matches!(loading, Some(Ok(_)))).map_err(js_err)?;
        if model.scheduler_source == crate::model::SCHEDULER_DEFAULTS {
            web_sys::console::warn_1(&format!("ddim-webgpu: using {}", model.scheduler_source).into());
        }
        let (engine, adapter) = match (choice, loading) {
            (EngineChoice::Gpu, _) => {
                let (gpu, target) = gpu_for_canvas(&canvas, presents).await.map_err(js_err)?;
                let mut adapter = [gpu.info.name.as_str(), gpu.info.driver.as_str(), gpu.info.driver_info.as_str()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if adapter.is_empty() {
                    adapter = "WebGPU adapter (the browser does not name it)".into();
                }
                if matches!(target, FrameTarget::Readback(_)) {
                    adapter.push_str(" [frames shown by readback: this browser cannot present WebGPU canvases]");
                }
                let engine = GpuEngine::new(gpu, &model).map_err(js_err)?;
                (EngineKind::WebGpu { engine: Box::new(engine), target }, adapter)
            }
            (_, Some(loading)) => {
                // The page's thread parses and packs weights of its own only where no worker starts.
                let kernel = crate::fast::gemm::Kernel::detect().name();
                let mut loaded = async { loading?.loaded().await }.await;
                // The threaded build failed to start (its files missing, shared memory refused):
                // batch workers instead, and the note says why.
                let mut fallback = String::new();
                if let (Err(e), Some((WorkerKind::Threads, _))) = (&loaded, workers) {
                    fallback = format!(" [no wasm threads: {e}]");
                    loaded =
                        async { WorkerEngine::start(&config_json, &weights, (WorkerKind::Batch, batch_workers(choice)))?.loaded().await }
                            .await;
                }
                match loaded {
                    Ok(workers) => {
                        let n = workers.worker_count();
                        let how = match (workers.threads(), threads_refusal()) {
                            (Some(t), _) => {
                                format!("in 1 Web Worker with {t} wasm threads (cross-origin isolated: each forward splits across them)")
                            }
                            (None, None) => format!("in {n} Web Worker(s), one image each{fallback}"),
                            (None, Some(why)) => format!("in {n} Web Worker(s), one image each [{why}]"),
                        };
                        let kernel = workers.kernel().unwrap_or(kernel).to_string();
                        (EngineKind::Workers(workers), format!("CPU: Rust compiled to wasm ({kernel} GEMM) {how}"))
                    }
                    Err(e) => {
                        // Here the data is parsed (and checked: a NaN weight is named by this parse).
                        let full;
                        let m = if model.weights.has_data() {
                            &model
                        } else {
                            full = parse(false).map_err(js_err)?;
                            &full
                        };
                        let note = format!("CPU: Rust compiled to wasm ({kernel} GEMM) on the page's thread [no Web Workers: {e}]");
                        (EngineKind::Cpu(CpuEngine::new(m)), note)
                    }
                }
            }
            (other, None) => {
                return Err(js_err(Error::Input(format!(
                    "engine {:?} runs natively only (ddim --engine {other}): the browser runs \"webgpu\", \"cpu\" or \"cpu:N\" (N workers)",
                    other.to_string()
                ))))
            }
        };
        let gpu = match &engine {
            EngineKind::WebGpu { engine, .. } => Some(GpuHandles::of(engine)),
            _ => None,
        };
        let inner = Inner {
            model,
            canvas,
            engine: RefCell::new(engine),
            adapter,
            cancel: Cell::new(false),
            running: Cell::new(false),
            destroyed: Cell::new(false),
            gpu: RefCell::new(gpu),
            last: RefCell::new(None),
            latent: RefCell::new(None),
            film: RefCell::new(Vec::new()),
            classifier: RefCell::new(None),
            branches: RefCell::new(Branches::default()),
            ctx2d: RefCell::new(None),
        };
        Ok(DiffusionSampler { inner: Rc::new(inner) })
    }

    /// The adapter (or "CPU …") this sampler runs on.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.inner.adapter.clone()
    }

    /// {parameters, sampleSize, inChannels, numClassEmbeds, storedDtype, scheduler, samplers,
    /// defaultSampler, alphasCumprod}
    #[wasm_bindgen(js_name = modelInfo)]
    pub fn model_info(&self) -> JsValue {
        let m = &self.inner.model;
        let o = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&o, &k.into(), &v);
        };
        set("parameters", (m.weights.parameter_count() as f64).into());
        set("sampleSize", m.config.sample_size.map(|s| s.0 as f64).into());
        set("inChannels", (m.config.in_channels as f64).into());
        set("numClassEmbeds", m.config.num_class_embeds.map(|k| k as f64).into());
        set("storedDtype", m.weights.stored_dtype.clone().into());
        set("scheduler", m.scheduler_source.clone().into());
        // The samplers this model can run (its time embedding reads their timesteps), its own first.
        let names: js_sys::Array = crate::run::options::usable_samplers(m).into_iter().map(|k| JsValue::from(k.as_str())).collect();
        set("samplers", names.into());
        set("defaultSampler", crate::run::options::default_sampler(m).as_str().into());
        // ᾱ_t over the train timesteps (the page plots the schedule and marks each evaluation).
        let schedule = crate::sampler::Schedule::new(m.scheduler.clone());
        set("alphasCumprod", js_sys::Float32Array::from(&schedule.alphas_cumprod[..]).into());
        set("classifier", self.inner.classifier.borrow().as_ref().map_or(JsValue::NULL, classifier_info));
        o.into()
    }

    /// Loads a noise-aware classifier for classifier guidance (`classifierScale`, `classifierClass`
    /// in `run`'s options, the "classifier" view) from its config.json and safetensors bytes
    /// (docs/classifier.md); replaces any earlier one. Checked like a model: errors name the field,
    /// tensor or file.
    #[wasm_bindgen(js_name = loadClassifier)]
    pub fn load_classifier(&self, config_json: String, weights: Vec<u8>) -> Result<JsValue, JsValue> {
        let clf = Classifier::from_files(&config_json, &weights, "classifier model.safetensors").map_err(js_err)?;
        self.set_classifier(clf).map_err(js_err)
    }

    /// `loadClassifier` from a folder served over HTTP (config.json + model.safetensors).
    #[wasm_bindgen(js_name = loadClassifierFromUrl)]
    pub async fn load_classifier_from_url(&self, base_url: String) -> Result<JsValue, JsValue> {
        let base = base_url.trim_end_matches('/');
        let config = fetch::fetch_required(&format!("{base}/config.json")).await.map_err(js_err)?;
        let weights = fetch::fetch_required(&format!("{base}/model.safetensors")).await.map_err(js_err)?;
        let config = String::from_utf8(config).map_err(|_| js_err(Error::Config("classifier config.json is not UTF-8 text".into())))?;
        let clf = Classifier::from_files(&config, &weights, &format!("{base}/model.safetensors")).map_err(js_err)?;
        self.set_classifier(clf).map_err(js_err)
    }

    fn set_classifier(&self, clf: Classifier) -> Result<JsValue, Error> {
        if self.inner.running.get() {
            return Err(Error::Input("a run is in progress: load the classifier between runs".into()));
        }
        match &mut *self.inner.engine.borrow_mut() {
            EngineKind::WebGpu { engine, .. } => engine.set_classifier(&clf)?,
            EngineKind::Workers(e) => e.set_classifier(&clf),
            EngineKind::Cpu(e) => e.set_classifier(&clf),
            EngineKind::Destroyed => return Err(Error::Input("this sampler was destroyed".into())),
        }
        let info = classifier_info(&clf);
        *self.inner.classifier.borrow_mut() = Some(clf);
        Ok(info)
    }

    /// Stops a running `run` within one step (it then rejects with "cancelled").
    pub fn cancel(&self) {
        self.inner.cancel.set(true);
    }

    /// Frees the engine now: the GPU device with every buffer (WebGPU) or the Web Workers (CPU).
    /// A running `run` is cancelled first and the engine freed when it stops; later runs reject.
    pub fn destroy(&self) {
        self.inner.cancel.set(true);
        if !self.inner.destroyed.replace(true) && !self.inner.running.get() {
            self.inner.free_engine();
        }
    }

    /// {gpuBuffers, gpuBytes, destroyed}: GPU buffers this sampler holds (0 on the CPU engine and
    /// after `destroy()`), for leak checks.
    pub fn stats(&self) -> JsValue {
        let (buffers, bytes) = self.inner.gpu.borrow().as_ref().map_or((0, 0), |g| g.live.get());
        let o = Object::new();
        let _ = Reflect::set(&o, &"gpuBuffers".into(), &(buffers as f64).into());
        let _ = Reflect::set(&o, &"gpuBytes".into(), &(bytes as f64).into());
        let _ = Reflect::set(&o, &"destroyed".into(), &self.inner.destroyed.get().into());
        o.into()
    }

    /// Test hook: loses the WebGPU device now, as a driver reset would (`device.destroy()`); the
    /// run in progress fails with "the GPU device was lost" and the next run makes a new device.
    /// False on the CPU engine.
    #[wasm_bindgen(js_name = loseDeviceForTest)]
    pub fn lose_device_for_test(&self) -> bool {
        self.inner.gpu.borrow().as_ref().map(|g| g.device.destroy()).is_some()
    }

    /// Runs with {mode: "sample" (default) | "edit" (SDEdit) | "inpaint" (RePaint) | "invert" (DDIM
    /// inversion, then the reconstruction) | "forward" (q(x_t | x0)) | "interpolate" (slerp between
    /// two x_T), steps, eta, seed, sampler: "ddim"|"ddpm"|"dpm++2m"|"euler"|"heun", batch, classLabel,
    /// guidance, view: "xt"|"x0"|"eps", image, strength, mask, jumpLength, jumpNSample, tEnd, from, to,
    /// record (keep every frame for `filmFrame`)}; calls `on_step({step, total, timestep, phase, ms})`
    /// after each drawn frame (if it returns a promise, the next step waits for it). Resolves with
    /// {reconstruction: {rmse, maxError, psnr}} for "invert", undefined otherwise.
    pub fn run(&self, options: JsValue, on_step: Option<js_sys::Function>) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            if inner.destroyed.get() {
                return Err(js_err(Error::Input("this sampler was destroyed".into())));
            }
            if inner.running.replace(true) {
                return Err(js_err(Error::Input("a run is already in progress: cancel it first".into())));
            }
            inner.cancel.set(false);
            let result = sample(&inner, &options, on_step.as_ref()).await;
            inner.running.set(false);
            if inner.destroyed.get() {
                inner.free_engine();
            }
            result.map_err(js_err)
        })
    }

    /// The last finished sample as {width, height, data: RGBA Uint8ClampedArray} (for PNG export).
    #[wasm_bindgen(js_name = lastImage)]
    pub fn last_image(&self) -> JsValue {
        let Some(x) = self.inner.last.borrow().clone() else { return JsValue::NULL };
        let (w, h, px) = grid_rgba(&x, grid_cols(x.shape[0]));
        let o = Object::new();
        let _ = Reflect::set(&o, &"width".into(), &(w as f64).into());
        let _ = Reflect::set(&o, &"height".into(), &(h as f64).into());
        let _ = Reflect::set(&o, &"data".into(), &js_sys::Uint8ClampedArray::from(&px[..]).into());
        o.into()
    }

    /// The last finished sample's values, [N, C, H, W] flattened, in −1 … 1 (an `image` for the
    /// next edit), or null.
    #[wasm_bindgen(js_name = lastSample)]
    pub fn last_sample(&self) -> Option<js_sys::Float32Array> {
        self.inner.last.borrow().as_ref().map(|x| js_sys::Float32Array::from(&x.data[..]))
    }

    /// The x_T found by the last "invert" run (`from`/`to` of an interpolation), or null.
    #[wasm_bindgen(js_name = lastLatent)]
    pub fn last_latent(&self) -> Option<js_sys::Float32Array> {
        self.inner.latent.borrow().as_ref().map(|x| js_sys::Float32Array::from(&x.data[..]))
    }

    /// Frames recorded by the last run with `record: true`.
    #[wasm_bindgen(js_name = filmLength)]
    pub fn film_length(&self) -> usize {
        self.inner.film.borrow().len()
    }

    /// Recorded frame k as {timestep, phase, width, height, xt, x0} (RGBA Uint8ClampedArrays of
    /// the batch grid: x_t and the predicted clean image), or null.
    #[wasm_bindgen(js_name = filmFrame)]
    pub fn film_frame(&self, k: usize) -> JsValue {
        let film = self.inner.film.borrow();
        let Some(f) = film.get(k) else { return JsValue::NULL };
        let cols = grid_cols(f.xt.shape[0]);
        let (w, h, xt) = grid_rgba(&f.xt, cols);
        let (_, _, x0) = grid_rgba(&f.x0, cols);
        let o = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&o, &k.into(), &v);
        };
        set("timestep", (f.timestep as f64).into());
        set("phase", f.phase.as_str().into());
        set("width", (w as f64).into());
        set("height", (h as f64).into());
        set("xt", js_sys::Uint8ClampedArray::from(&xt[..]).into());
        set("x0", js_sys::Uint8ClampedArray::from(&x0[..]).into());
        o.into()
    }
}

/// `navigator.hardwareConcurrency` of the page or the worker (1 if unknown).
fn hardware_concurrency() -> f64 {
    Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| Reflect::get(&n, &"hardwareConcurrency".into()))
        .ok()
        .and_then(|v| v.as_f64())
        .unwrap_or(1.0)
}

/// Whether this page or worker is cross-origin isolated (COOP/COEP): only then can wasm threads
/// share memory.
fn cross_origin_isolated() -> bool {
    Reflect::get(&js_sys::global(), &"crossOriginIsolated".into()).ok().and_then(|v| v.as_bool()).unwrap_or(false)
}

/// Why the CPU engine cannot run wasm threads here, if it cannot: they need a cross-origin isolated
/// page (shared memory) and relaxed SIMD (the threaded build has it: this instance is the relaxed
/// build exactly where the browser validates it, www/widget/wasm.js).
fn threads_refusal() -> Option<&'static str> {
    if !cross_origin_isolated() {
        Some("not cross-origin isolated: wasm threads need the page served with COOP/COEP headers")
    } else if !cfg!(target_feature = "relaxed-simd") {
        Some("no wasm threads: the threaded build needs relaxed SIMD, which this browser lacks")
    } else {
        None
    }
}

/// How the CPU engine runs, for the CPU engines: where wasm threads can run, one threaded worker
/// ("cpu": a thread per core up to 8; "cpu:N": N threads); elsewhere batch workers (`batch_workers`).
fn cpu_workers(choice: EngineChoice) -> Option<(WorkerKind, usize)> {
    let EngineChoice::Cpu { threads } = choice else { return None };
    Some(match threads_refusal() {
        None => (WorkerKind::Threads, threads.unwrap_or_else(|| (hardware_concurrency() as usize).clamp(1, 8))),
        Some(_) => (WorkerKind::Batch, batch_workers(choice)),
    })
}

/// Batch workers: "cpu" one per core up to 4, "cpu:N" N.
fn batch_workers(choice: EngineChoice) -> usize {
    match choice {
        EngineChoice::Cpu { threads: Some(n) } => n,
        _ => (hardware_concurrency() as usize).clamp(1, 4),
    }
}

/// Resolves in a new macrotask, so input and rendering can run between steps. A MessageChannel
/// message, not setTimeout(0): nested timeouts are clamped to 4 ms, a fifth of a CPU-engine step.
async fn yield_to_event_loop() {
    let Ok(channel) = web_sys::MessageChannel::new() else { return sleep_ms(0).await };
    let p = js_sys::Promise::new(&mut |resolve, _| {
        channel.port1().set_onmessage(Some(&resolve));
    });
    if channel.port2().post_message(&JsValue::NULL).is_err() {
        return sleep_ms(0).await;
    }
    let _ = JsFuture::from(p).await;
}

/// Reports a drawn step to the page and lets the browser paint; Stop once `cancel` was called.
async fn after_step(
    inner: &Inner,
    cb: Option<&js_sys::Function>,
    info: StepInfo,
    (o, numbers): (Object, Option<StepNumbers>),
    started: &mut f64,
) -> Flow {
    if let Some(cb) = cb {
        if let Some(n) = numbers {
            let row = Object::new();
            for (k, v) in [("sigma", Some(n.sigma)), ("logSnr", Some(n.log_snr)), ("xNorm", Some(n.x_norm)), ("x0Change", n.x0_change)] {
                let _ = Reflect::set(&row, &k.into(), &v.map_or(JsValue::NULL, |v| (v as f64).into()));
            }
            let _ = Reflect::set(&o, &"numbers".into(), &row);
        }
        let _ = Reflect::set(&o, &"step".into(), &((info.index + 1) as f64).into());
        let _ = Reflect::set(&o, &"total".into(), &(info.total as f64).into());
        let _ = Reflect::set(&o, &"timestep".into(), &(info.timestep as f64).into());
        let _ = Reflect::set(&o, &"phase".into(), &info.phase.as_str().into());
        let _ = Reflect::set(&o, &"ms".into(), &(now_ms() - *started).into());
        // A callback may return a promise (the engine worker waits for the page to take each
        // frame): the next step starts when it settles.
        if let Ok(p) = cb.call1(&JsValue::NULL, &o).and_then(|r| r.dyn_into::<js_sys::Promise>()) {
            let _ = JsFuture::from(p).await;
        }
    }
    yield_to_event_loop().await;
    *started = now_ms();
    if inner.cancel.get() {
        Flow::Stop
    } else {
        Flow::Continue
    }
}

/// One `run` call: the plan of its options, and for "invert" the reconstruction after it.
async fn sample(inner: &Inner, o: &JsValue, cb: Option<&js_sys::Function>) -> Result<JsValue, Error> {
    let options::WebRun { mut opts, views, arrays, mode, branch, resume } =
        options::read(o, &inner.model, inner.classifier.borrow().as_ref().map(|c| &c.config))?;
    let record = Reflect::get(o, &"record".into()).is_ok_and(|v| v.is_truthy());
    let numbers = Reflect::get(o, &"numbers".into()).is_ok_and(|v| v.is_truthy());
    if let Some(id) = resume {
        opts = opts.resume(inner.branches.borrow().get(id)?);
    }
    renew_lost_device(inner).await?;
    let plan = opts.plan(&inner.model)?;
    if branch.is_some() && plan.origin.is_none() {
        return Err(Error::Input("branch: only sampling runs keep nodes (mode \"sample\" with ddim, ddpm, dpm++2m, euler or heun)".into()));
    }
    let new_ask = || FrameAsk {
        record,
        numbers: numbers.then(|| NumbersTracker::new(crate::sampler::Schedule::new(inner.model.scheduler.clone()).alphas_cumprod)),
        arrays: arrays.clone(),
        branch,
        parent: resume,
    };
    if mode == options::Mode::Interpolate && plan.steps.iter().any(|s| s.coeffs.c_noise != 0.0) {
        return Err(Error::Input("interpolate needs a deterministic sampler (DDIM with η = 0, dpm++2m, euler or heun)".into()));
    }
    inner.film.borrow_mut().clear();
    let x = run_plan(inner, &plan, &views, cb, &mut new_ask()).await?;
    if mode != options::Mode::Invert {
        *inner.last.borrow_mut() = Some(x);
        return Ok(JsValue::UNDEFINED);
    }
    let image = Tensor::new(plan.shape.to_vec(), plan.x_start.clone())?;
    *inner.latent.borrow_mut() = Some(x.clone());
    let recon = run_plan(inner, &opts.reconstruction(x).plan(&inner.model)?, &views, cb, &mut new_ask()).await?;
    let (rmse, max, psnr) = recon.reconstruction_error(&image);
    *inner.last.borrow_mut() = Some(recon);
    let r = Object::new();
    for (k, v) in [("rmse", rmse), ("maxError", max), ("psnr", psnr)] {
        let _ = Reflect::set(&r, &k.into(), &(v as f64).into());
    }
    let out = Object::new();
    let _ = Reflect::set(&out, &"reconstruction".into(), &r);
    Ok(out.into())
}

/// Keeps frame `info` of a recorded run: x_t and x̂₀ read back (forward frames: the clean image).
async fn record_frame<E: Engine>(inner: &Inner, (e, reads): (&mut E, &mut Reads), plan: &RunPlan, info: StepInfo) -> Result<(), Error> {
    let xt = Tensor::clone(&*reads.get(e, View::Xt).await?);
    let x0 = match (&plan.forward, info.phase) {
        (Some(path), Phase::Forward) => Tensor::new(plan.shape.to_vec(), path.x0.clone())?,
        _ => Tensor::clone(&*reads.get(e, View::X0).await?),
    };
    inner.film.borrow_mut().push(FilmFrame { timestep: info.timestep, phase: info.phase, xt, x0 });
    Ok(())
}

/// One frame's readbacks: each view read from the engine at most once per frame, however many of
/// the frame's consumers (the readback canvas, the film, the numbers, the arrays, a branch's node)
/// ask for it. On WebGPU each read is a buffer mapped back; the page's default run asked for x_t
/// four times and x̂₀ three times a frame before.
#[derive(Default)]
struct Reads(Vec<(View, std::rc::Rc<Tensor>)>);

impl Reads {
    async fn get<E: Engine>(&mut self, e: &mut E, v: View) -> Result<std::rc::Rc<Tensor>, Error> {
        if let Some((_, t)) = self.0.iter().find(|(w, _)| *w == v) {
            return Ok(t.clone());
        }
        let t = std::rc::Rc::new(e.read(v).await?);
        self.0.push((v, t.clone()));
        Ok(t)
    }
}

/// The gap between views drawn side by side, in pixels.
const VIEW_GAP: usize = 4;

// The engine stays borrowed for the whole run: `running` admits one run at a time, and nothing
// else borrows the engine.
#[allow(clippy::await_holding_refcell_ref)]
async fn run_plan(
    inner: &Inner,
    plan: &RunPlan,
    views: &[View],
    cb: Option<&js_sys::Function>,
    ask: &mut FrameAsk,
) -> Result<Tensor, Error> {
    for v in views.iter().chain(&ask.arrays) {
        v.check(plan)?;
    }
    let [n, _, h, w] = plan.shape;
    let cols = grid_cols(n);
    let (gw, gh) = (cols * w, n.div_ceil(cols) * h);
    let width = views.len() * gw + (views.len() - 1) * VIEW_GAP;
    inner.canvas.set_size(width as u32, gh as u32);
    let lefts: Vec<usize> = (0..views.len()).map(|k| k * (gw + VIEW_GAP)).collect();
    let mut engine = inner.engine.borrow_mut();
    let mut started = now_ms();
    match &mut *engine {
        EngineKind::WebGpu { engine, target: FrameTarget::Surface { surface, format } } => {
            let mut frames: Option<SurfaceFrames> = None;
            run::run(&mut **engine, plan, async |e: &mut GpuEngine, info| {
                if frames.is_none() {
                    let mut drawers = Vec::new();
                    for (v, left) in views.iter().zip(&lefts) {
                        let (src, look) = e.source(*v).ok_or_else(|| Error::Gpu("the run has no buffers".into()))?;
                        drawers.push(SampleDrawer::panel(e.gpu(), src, (plan.shape, cols), *format, look, *left as u32));
                    }
                    frames = Some(SurfaceFrames::new(e.gpu(), surface, *format, (width as u32, gh as u32), drawers));
                }
                frames.as_ref().map(|f| f.show(e.gpu())).transpose()?;
                let extras = frame_extras(inner, (e, &mut Reads::default()), plan, info, ask).await?;
                Ok(after_step(inner, cb, info, extras, &mut started).await)
            })
            .await
        }
        EngineKind::WebGpu { engine, target: FrameTarget::Readback(ctx) } => {
            readback_run(inner, &mut **engine, plan, ctx, (views, &lefts, cols), (cb, ask), &mut started).await
        }
        EngineKind::Workers(engine) => {
            let ctx = inner.context_2d()?;
            readback_run(inner, engine, plan, &ctx, (views, &lefts, cols), (cb, ask), &mut started).await
        }
        EngineKind::Cpu(engine) => {
            let ctx = inner.context_2d()?;
            readback_run(inner, engine, plan, &ctx, (views, &lefts, cols), (cb, ask), &mut started).await
        }
        EngineKind::Destroyed => Err(Error::Input("this sampler was destroyed".into())),
    }
}

/// What a frame carries besides its step (`FrameAsk`): recorded, its numbers, its arrays (each
/// view's values as a Float32Array under the view's name), and a branching run's node {node,
/// parent, dropped: the ids of nodes dropped for the budget}.
async fn frame_extras<E: Engine>(
    inner: &Inner,
    (e, reads): (&mut E, &mut Reads),
    plan: &RunPlan,
    info: StepInfo,
    ask: &mut FrameAsk,
) -> Result<(Object, Option<StepNumbers>), Error> {
    if ask.record {
        record_frame(inner, (e, reads), plan, info).await?;
    }
    let numbers = frame_numbers(&mut ask.numbers, (e, reads), info).await?;
    let o = Object::new();
    let set = |k: &str, v: JsValue| {
        let _ = Reflect::set(&o, &k.into(), &v);
    };
    for v in &ask.arrays {
        set(v.as_str(), js_sys::Float32Array::from(&reads.get(e, *v).await?.data[..]).into());
    }
    if let (Some(budget), Phase::Reverse) = (ask.branch, info.phase) {
        let (x, x0) = (reads.get(e, View::Xt).await?.data.clone(), reads.get(e, View::X0).await?.data.clone());
        let node = Node::new(plan, info.index, EngineState { x, x0, h: e.read_history().await? })?;
        let (id, dropped) = inner.branches.borrow_mut().keep(node, budget);
        set("node", (id as f64).into());
        set("parent", ask.parent.map_or(JsValue::NULL, |p| (p as f64).into()));
        set("dropped", dropped.iter().map(|&d| JsValue::from(d as f64)).collect::<js_sys::Array>().into());
        ask.parent = Some(id);
    }
    Ok((o, numbers))
}

/// After a device loss (a driver reset, the GPU process restarting, the test hook), the next run
/// gets a new device and engine on the same canvas, as WebGPU asks pages to do.
async fn renew_lost_device(inner: &Inner) -> Result<(), Error> {
    let old = std::mem::replace(&mut *inner.engine.borrow_mut(), EngineKind::Destroyed);
    let target = match old {
        EngineKind::WebGpu { engine, target } if engine.gpu().is_lost() => target,
        other => {
            *inner.engine.borrow_mut() = other;
            return Ok(());
        }
    };
    web_sys::console::warn_1(&"ddim-webgpu: the GPU device was lost; making a new one".into());
    // Until the new device exists the sampler has none: a failure here leaves it unusable, named.
    let (gpu, target) = new_gpu_for_target(target).await?;
    let mut engine = GpuEngine::new(gpu, &inner.model)?;
    if let Some(clf) = inner.classifier.borrow().as_ref() {
        engine.set_classifier(clf)?;
    }
    *inner.gpu.borrow_mut() = Some(GpuHandles::of(&engine));
    *inner.engine.borrow_mut() = EngineKind::WebGpu { engine: Box::new(engine), target };
    Ok(())
}

/// A run whose frames are read to the host and put into a 2D canvas, each view at its column.
async fn readback_run<E: Engine>(
    inner: &Inner,
    engine: &mut E,
    plan: &RunPlan,
    ctx: &Context2d,
    (views, lefts, cols): (&[View], &[usize], usize),
    (cb, ask): (Option<&js_sys::Function>, &mut FrameAsk),
    started: &mut f64,
) -> Result<Tensor, Error> {
    run::run(engine, plan, async |e: &mut E, info| {
        let mut reads = Reads::default();
        for (v, left) in views.iter().zip(lefts) {
            put_image(ctx, &*reads.get(e, *v).await?, cols, v.signed(), *left)?;
        }
        let extras = frame_extras(inner, (e, &mut reads), plan, info, ask).await?;
        Ok(after_step(inner, cb, info, extras, started).await)
    })
    .await
}

/// A denoising frame's numbers (`numbers: true`): x_t and x̂₀ read back (on WebGPU a readback per
/// frame, asked for only then).
async fn frame_numbers<E: Engine>(
    tracker: &mut Option<NumbersTracker>,
    (e, reads): (&mut E, &mut Reads),
    info: StepInfo,
) -> Result<Option<StepNumbers>, Error> {
    match tracker {
        Some(t) if info.phase != Phase::Forward => {
            let (x, x0) = (reads.get(e, View::Xt).await?, reads.get(e, View::X0).await?);
            Ok(Some(t.frame(info.timestep as f32, &x, &x0)))
        }
        _ => Ok(None),
    }
}
