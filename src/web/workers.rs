//! The CPU engine off the main thread: the fast CPU ops run in module Web Workers, and the main
//! thread only applies the scheduler update and draws: the page stays responsive while sampling.
//! Two kinds (`WorkerKind`):
//! - Batch (cpu-worker.js, any page): workers each with its own wasm instance and copy of the
//!   weights (no SharedArrayBuffer, so any static server works); a step splits the U-Net batch
//!   (guidance halves, batch items) across them, so one image runs on one core.
//! - Threads (cpu-worker-threads.js, cross-origin isolated pages): one worker runs the threaded
//!   build (wasm atomics, shared memory) with fork workers (fork-worker.js) on its memory, and
//!   splits each forward as natively (`fast::fork`): the batch, and each big conv's channels.
//!
//! Protocol (structured clone; result buffers are transferred):
//!   main → worker {type: "load", config, weights, threads?}
//!                                                      → {type: "ready", threads?, kernel?} | {type: "error", message}
//!   main → worker {type: "forward", sample, shape, timesteps, labels}
//!                                                      → {type: "result", out} | {type: "error", message}

use js_sys::{Array, Float32Array, Object, Promise, Reflect, Uint32Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::classifier::Classifier;
use crate::error::{Error, Result};
use crate::fast::FastOps;
use crate::model::UNetConfig;
use crate::reference::forward_with;
use crate::run::cpu::{check_activations, held, unet_input, HostClassifier, HostState};
use crate::run::{Engine, Guidance, RunPlan, View};
use crate::sampler::StepCoeffs;
use crate::{Model, Tensor};

thread_local! {
    /// How to start a CPU worker, set by the npm package (`setWorkerFactory`); without it the
    /// engine starts workers from an inline script (the raw wasm-bindgen output, unbundled).
    static WORKER_FACTORY: std::cell::RefCell<Option<js_sys::Function>> = const { std::cell::RefCell::new(None) };
    /// The same for the threaded build's worker (`setThreadsWorkerFactory`, cpu-worker-threads.js).
    static THREADS_FACTORY: std::cell::RefCell<Option<js_sys::Function>> = const { std::cell::RefCell::new(None) };
}

/// Sets the function that starts the threaded build's CPU worker (`() => Worker`): the package
/// passes `() => new Worker(new URL('./cpu-worker-threads.js', import.meta.url), {type: 'module'})`.
#[wasm_bindgen(js_name = setThreadsWorkerFactory)]
pub fn set_threads_worker_factory(factory: js_sys::Function) {
    THREADS_FACTORY.with(|f| *f.borrow_mut() = Some(factory));
}

/// Which worker script a CPU worker runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WorkerKind {
    /// cpu-worker.js: an unthreaded instance of its own (batch split across such workers).
    Batch,
    /// cpu-worker-threads.js: the threaded build, its fork workers on one shared memory.
    Threads,
}

impl WorkerKind {
    fn script(self) -> &'static str {
        match self {
            WorkerKind::Batch => "./cpu-worker.js",
            WorkerKind::Threads => "./cpu-worker-threads.js",
        }
    }
}

/// Sets the function that starts one CPU-engine worker (`() => Worker`). The package passes
/// `() => new Worker(new URL('./cpu-worker.js', import.meta.url), {type: 'module'})`, which
/// bundlers recognise, where a worker built from a blob URL could not find the bundled module.
#[wasm_bindgen(js_name = setWorkerFactory)]
pub fn set_worker_factory(factory: js_sys::Function) {
    WORKER_FACTORY.with(|f| *f.borrow_mut() = Some(factory));
}

/// One worker: from the factory if one was set, else from the inline script.
fn start_worker(kind: WorkerKind, blob_url: &mut Option<String>) -> Result<web_sys::Worker> {
    let failed = |e: JsValue| Error::Input(format!("cannot start a Web Worker: {}", js_msg(e)));
    let factory = match kind {
        WorkerKind::Batch => WORKER_FACTORY.with(|f| f.borrow().clone()),
        WorkerKind::Threads => THREADS_FACTORY.with(|f| f.borrow().clone()),
    };
    if let Some(factory) = factory {
        let w = factory.call0(&JsValue::NULL).map_err(failed)?;
        return w.dyn_into::<web_sys::Worker>().map_err(|_| Error::Input("the worker factory did not return a Worker".into()));
    }
    if blob_url.is_none() {
        let blob = web_sys::Blob::new_with_str_sequence_and_options(&Array::of1(&worker_script(kind)?.into()), &{
            let o = web_sys::BlobPropertyBag::new();
            o.set_type("text/javascript");
            o
        })
        .map_err(|e| Error::Input(format!("worker script: {}", js_msg(e))))?;
        *blob_url = Some(web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| Error::Input(js_msg(e)))?);
    }
    let opts = web_sys::WorkerOptions::new();
    opts.set_type(web_sys::WorkerType::Module);
    web_sys::Worker::new_with_options(blob_url.as_deref().unwrap_or_default(), &opts).map_err(failed)
}

/// The worker side: one U-Net on the fast CPU ops (used by the worker script, not by pages).
#[wasm_bindgen]
pub struct UNetWorker {
    ops: FastOps,
    config: UNetConfig,
}

#[wasm_bindgen]
impl UNetWorker {
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str, weights: &[u8]) -> std::result::Result<UNetWorker, JsValue> {
        let model = Model::from_bytes(config_json, weights, None).map_err(super::js_err)?;
        // Taken over, not copied: each conv keeps only its packed weights.
        let config = model.config.clone();
        Ok(UNetWorker { ops: FastOps::from_model(model), config })
    }

    /// Threads each forward may use (the threaded build: this worker and its fork workers).
    #[wasm_bindgen(js_name = setThreads)]
    pub fn set_threads(&mut self, threads: usize) {
        self.ops = self.ops.clone().with_threads(threads);
    }

    /// Threads each forward uses.
    pub fn threads(&self) -> usize {
        self.ops.threads()
    }

    /// How an op may split (`fast::fork::Split`): tests force every conv to split with
    /// `min_share_forks` 0, where the cost model would keep a small model's convs whole.
    #[wasm_bindgen(js_name = setSplit)]
    pub fn set_split(&mut self, threads: usize, min_share_forks: f64) {
        self.ops = self.ops.clone().with_split(crate::fast::fork::Split { threads: threads.max(1), min_share_forks });
    }

    /// The GEMM microkernel this instance runs ("simd128", "relaxed-simd", …).
    pub fn kernel(&self) -> String {
        self.ops.kernel_name().into()
    }

    /// One forward: `sample` of `shape` [N,C,H,W], one timestep and (class-conditional) one label per item.
    pub fn forward(
        &mut self,
        sample: Vec<f32>,
        shape: Vec<u32>,
        timesteps: Vec<f32>,
        labels: Option<Vec<u32>>,
    ) -> std::result::Result<Vec<f32>, JsValue> {
        let x = Tensor::new(shape.iter().map(|&d| d as usize).collect(), sample).map_err(super::js_err)?;
        let out = forward_with(&mut self.ops, &self.config, &x, &timesteps, labels.as_deref()).map_err(super::js_err)?;
        Ok(out.data)
    }
}

#[wasm_bindgen]
extern "C" {
    /// `import.meta` of the JS glue (pkg/ddim_webgpu.js), beside which cpu-worker.js ships.
    type ImportMeta;
    #[wasm_bindgen(thread_local_v2, js_namespace = import, js_name = meta)]
    static IMPORT_META: ImportMeta;
    #[wasm_bindgen(method, getter)]
    fn url(this: &ImportMeta) -> String;
}

/// A blob module that imports the package's worker script (cpu-worker.js, cpu-worker-threads.js): it
/// starts from any origin (a CDN), where `new Worker(url)` would need the page's own origin. (Read
/// from the glue's own `import.meta`, not from an inline JS snippet: a snippet is one more module
/// the page's module graph waits for.)
fn worker_script(kind: WorkerKind) -> Result<String> {
    let glue = IMPORT_META.with(ImportMeta::url);
    let url = web_sys::Url::new_with_base(kind.script(), &glue).map_err(|e| Error::Input(format!("worker script URL: {}", js_msg(e))))?;
    // A quoted, escaped JS string literal (Rust's and JS's escapes agree here).
    Ok(format!("import {:?};", url.href()))
}

fn js_msg(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).or_else(|| e.as_string()).unwrap_or_else(|| format!("{e:?}"))
}

/// The worker's reply to a `post`; a reply of type "error", a worker error event or an
/// unloadable script reject with its message.
async fn reply(promise: Promise) -> Result<JsValue> {
    JsFuture::from(promise).await.map_err(|e| Error::Input(format!("CPU worker: {}", js_msg(e))))
}

/// Posts `msg` (transferring `transfer`) now, and returns the promise of the worker's reply.
fn post(worker: &web_sys::Worker, msg: Object, transfer: Array) -> Result<Promise> {
    let reply = Promise::new(&mut |resolve, reject| {
        let reject2 = reject.clone();
        let on_message = Closure::once_into_js(move |e: web_sys::MessageEvent| {
            let data = e.data();
            if Reflect::get(&data, &"type".into()).ok().and_then(|t| t.as_string()).as_deref() == Some("error") {
                let _ = reject.call1(&JsValue::NULL, &Reflect::get(&data, &"message".into()).unwrap_or(JsValue::NULL));
            } else {
                let _ = resolve.call1(&JsValue::NULL, &data);
            }
        });
        // A script that fails to load fires a plain Event (no `message`), a runtime error an ErrorEvent.
        let on_error = Closure::once_into_js(move |e: JsValue| {
            let msg = Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string());
            let msg = msg.unwrap_or_else(|| "its script could not be loaded".into());
            let _ = reject2.call1(&JsValue::NULL, &format!("worker failed: {msg}").into());
        });
        worker.set_onmessage(Some(on_message.unchecked_ref()));
        worker.set_onerror(Some(on_error.unchecked_ref()));
    });
    worker.post_message_with_transfer(&msg, &transfer).map_err(|e| Error::Input(format!("postMessage: {}", js_msg(e))))?;
    Ok(reply)
}

fn message(pairs: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &(*k).into(), v);
    }
    o
}

/// The run layer's CPU engine on Web Workers.
pub struct WorkerEngine {
    workers: Vec<web_sys::Worker>,
    /// Threads of the one threaded worker, as it reported them once loaded.
    threads: Option<usize>,
    /// The GEMM microkernel the threaded worker runs (its build's, not this thread's).
    kernel: Option<String>,
    /// The model's config (the activations' size check: each worker is a heap of its own).
    config: UNetConfig,
    state: HostState,
    pending: Option<Pending>,
    /// The classifier of classifier guidance, run on this thread after the workers' U-Net (it
    /// is small next to the U-Net).
    classifier: Option<HostClassifier<FastOps>>,
}

/// The step submitted by `step` and finished by `sync`.
struct Pending {
    coeffs: StepCoeffs,
    guidance: Guidance,
    noise: Option<Vec<f32>>,
    /// The U-Net input's first N items, the sample shape and the timestep (classifier guidance).
    classifier_input: Option<(Vec<f32>, [usize; 4], f32)>,
    /// One promise per worker, resolving to its share of the U-Net batch, in batch order.
    replies: Vec<Promise>,
}

/// Workers that were sent the model and are parsing and packing it (`WorkerEngine::start`).
pub struct LoadingWorkers {
    engine: WorkerEngine,
    loads: Vec<Promise>,
}

impl LoadingWorkers {
    /// The engine once every worker has loaded the model (an error names the first that failed;
    /// all of them are terminated then).
    /// The threads' count the threaded worker reported (`threads`), else 1 per worker.
    pub async fn loaded(mut self) -> Result<WorkerEngine> {
        for load in self.loads {
            let data = reply(load).await?;
            self.engine.threads = Reflect::get(&data, &"threads".into()).ok().and_then(|t| t.as_f64()).map(|t| t as usize);
            self.engine.kernel = Reflect::get(&data, &"kernel".into()).ok().and_then(|k| k.as_string());
        }
        Ok(self.engine)
    }
}

impl WorkerEngine {
    /// Starts `count` workers and sends each the model: they load it while the caller goes on
    /// (the page's thread reads the header meanwhile), and `loaded` waits for them.
    /// `kind` Threads starts one worker of `count` threads (the threaded build), Batch `count`
    /// workers that split the batch.
    pub fn start(config_json: &str, weights: &[u8], (kind, count): (WorkerKind, usize)) -> Result<LoadingWorkers> {
        // Checked before any worker starts: a bad config is this call's error, not the workers'
        // (whose failed loads nobody would then await).
        let config = UNetConfig::from_json(config_json)?;
        let mut blob_url = None;
        let workers = match kind {
            WorkerKind::Batch => count.max(1),
            WorkerKind::Threads => 1,
        };
        let workers = (0..workers).map(|_| start_worker(kind, &mut blob_url)).collect::<Result<Vec<_>>>()?;
        let loads = workers
            .iter()
            .map(|w| {
                let bytes = Uint8Array::from(weights).buffer();
                let mut msg = vec![("type", "load".into()), ("config", config_json.into()), ("weights", bytes.clone().into())];
                if kind == WorkerKind::Threads {
                    msg.push(("threads", (count.max(1) as f64).into()));
                }
                post(w, message(&msg), Array::of1(&bytes))
            })
            .collect::<Result<_>>();
        let engine =
            WorkerEngine { workers, threads: None, kernel: None, config, state: HostState::default(), pending: None, classifier: None };
        Ok(LoadingWorkers { loads: loads?, engine })
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// The threads of the threaded build's worker (None: unthreaded workers).
    pub fn threads(&self) -> Option<usize> {
        self.threads
    }

    /// The threaded worker's GEMM microkernel (None: unthreaded workers, which run this thread's build).
    pub fn kernel(&self) -> Option<&str> {
        self.kernel.as_deref()
    }

    /// Loads the classifier of classifier guidance (replacing any earlier one).
    pub fn set_classifier(&mut self, classifier: &Classifier) {
        self.classifier = Some(HostClassifier { config: classifier.config.clone(), ops: FastOps::from_tensors(&classifier.tensors) });
    }
}

impl Drop for WorkerEngine {
    fn drop(&mut self) {
        self.workers.iter().for_each(|w| w.terminate());
    }
}

impl Engine for WorkerEngine {
    async fn start(&mut self, plan: &RunPlan) -> Result<()> {
        // Each worker runs its share of the U-Net batch in a heap of its own.
        check_activations(&self.config, plan, plan.unet_batch().div_ceil(self.workers.len()))?;
        self.state.start(plan);
        self.pending = None;
        Ok(())
    }

    fn step_at(&mut self, plan: &RunPlan, index: usize, t_model: f32, noise: Option<&[f32]>) -> Result<()> {
        let [_, c, h, w] = plan.shape;
        let item = c * h * w;
        let ub = plan.unet_batch();
        let input = unet_input(plan, index, &self.state.x);
        let labels = plan.guidance.unet_labels.as_deref();
        let t = t_model;
        let per = ub.div_ceil(self.workers.len());
        let mut replies = Vec::new();
        for (wi, worker) in self.workers.iter().enumerate() {
            let (a, b) = (wi * per, ((wi + 1) * per).min(ub));
            if a >= b {
                break;
            }
            let sample = Float32Array::from(&input[a * item..b * item]);
            let shape: Vec<u32> = vec![(b - a) as u32, c as u32, h as u32, w as u32];
            let msg = message(&[
                ("type", "forward".into()),
                ("sample", sample.clone().into()),
                ("shape", Uint32Array::from(&shape[..]).into()),
                ("timesteps", Float32Array::from(&vec![t; b - a][..]).into()),
                ("labels", labels.map_or(JsValue::NULL, |l| Uint32Array::from(&l[a..b]).into())),
            ]);
            let transfer = Array::of1(&sample.buffer());
            replies.push(post(worker, msg, transfer)?);
        }
        let (coeffs, guidance) = (plan.steps[index].coeffs, plan.guidance.clone());
        if guidance.classifier.is_some() {
            held(&mut self.classifier)?;
        }
        let classifier_input = guidance.classifier.is_some().then(|| (input[..plan.count()].to_vec(), plan.shape, t));
        self.pending = Some(Pending { coeffs, guidance, noise: noise.map(<[f32]>::to_vec), classifier_input, replies });
        Ok(())
    }

    async fn sync(&mut self) -> Result<()> {
        let Some(p) = self.pending.take() else { return Ok(()) };
        let mut m = Vec::with_capacity(2 * self.state.x.len());
        for r in p.replies {
            let data = reply(r).await?;
            let out: Float32Array = Reflect::get(&data, &"out".into()).map_err(|e| Error::Input(js_msg(e)))?.unchecked_into();
            m.extend(out.to_vec());
        }
        let term = match (&p.guidance.classifier, p.classifier_input) {
            (Some(guide), Some((x, shape, t))) => Some(held(&mut self.classifier)?.term(guide, &x, shape, t)?),
            _ => None,
        };
        self.state.update(&p.guidance, p.coeffs, &m, p.noise.as_deref(), term);
        Ok(())
    }

    async fn read(&mut self, view: View) -> Result<Tensor> {
        self.state.read(view)
    }

    fn write_x(&mut self, x: &[f32]) -> Result<()> {
        self.state.write_x(x)
    }

    fn write_x0(&mut self, x0: &[f32]) -> Result<()> {
        self.state.write_x0(x0)
    }

    async fn read_history(&mut self) -> Result<Vec<f32>> {
        Ok(self.state.h.clone())
    }

    fn write_history(&mut self, h: &[f32]) -> Result<()> {
        self.state.write_history(h)
    }

    async fn first_non_finite_step(&mut self) -> Result<Option<usize>> {
        Ok(self.state.first_non_finite)
    }
}

/// Called by fork-worker.js when its instance trapped while serving: the pool is marked broken
/// (`fast::fork::poison`), so the engine's fork waiting on that worker's share fails, with a message
/// saying so, instead of waiting forever.
#[wasm_bindgen(js_name = forkWorkerFailed)]
pub fn fork_worker_failed() {
    crate::fast::fork::poison();
}

/// This instance's memory (the threaded build's is shared: its fork workers instantiate on it).
#[wasm_bindgen(js_name = engineMemory)]
pub fn wasm_memory() -> JsValue {
    wasm_bindgen::memory()
}

/// This instance's compiled module (the threaded build hands it to its fork workers).
#[wasm_bindgen(js_name = engineModule)]
pub fn wasm_module() -> JsValue {
    wasm_bindgen::module()
}

/// The calling Web Worker becomes a thread of the CPU engine's fork pool (`fast::fork`) and never
/// returns: the threaded build's fork-worker.js calls it once its instance shares the engine
/// worker's memory. The unthreaded builds have no shared memory and refuse.
#[wasm_bindgen(js_name = forkWorker)]
pub fn fork_worker() -> std::result::Result<(), JsValue> {
    if !cfg!(target_feature = "atomics") {
        return Err(JsValue::from_str("forkWorker: this wasm build has no threads (the threaded build is threads/ddim_webgpu.js)"));
    }
    crate::fast::fork::serve()
}
