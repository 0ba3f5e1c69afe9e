//! The browser API (wasm-bindgen): a `DdimSampler` bound to a `<canvas>`, running either the
//! WebGPU engine (frames drawn straight from the GPU into the canvas texture) or the CPU engine
//! (the Rust reference compiled to wasm, frames put into a 2D canvas). Every failure becomes a JS
//! `Error` carrying the engine's message.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::HtmlCanvasElement;

use crate::gpu::recording::GpuUNet;
use crate::gpu::sampler::{GpuSampler, SampleDrawer};
use crate::gpu::{request_adapter, GpuDevice};
use crate::image_grid::{grid_cols, grid_rgba};
use crate::sampler::{CpuSampler, NoiseSource, RunPlan, SampleOptions, SamplerKind, Schedule, StepInfo};
use crate::{Error, Model, Tensor};

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js_err(e: Error) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

/// How WebGPU frames reach the canvas.
enum Present {
    /// A render pass draws x_t straight into the canvas texture (no readback).
    Surface { surface: wgpu::Surface<'static>, format: wgpu::TextureFormat },
    /// The browser cannot present WebGPU canvases (seen: headless Chromium on SwiftShader loses the
    /// device at the first present), so each frame is read back and put into a 2D canvas.
    Readback(web_sys::CanvasRenderingContext2d),
}

enum Engine {
    Gpu { engine: GpuEngine, present: Present },
    Cpu,
}

struct Inner {
    model: Model,
    canvas: HtmlCanvasElement,
    engine: RefCell<Engine>,
    adapter: String,
    cancel: Cell<bool>,
    running: Cell<bool>,
    last: RefCell<Option<Tensor>>,
}

/// A diffusion model bound to a canvas.
#[wasm_bindgen]
pub struct DdimSampler {
    inner: Rc<Inner>,
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, Error> {
    let window = web_sys::window().ok_or_else(|| Error::Io { path: url.into(), msg: "no window".into() })?;
    let io = |msg: String| Error::Io { path: url.into(), msg };
    let resp = JsFuture::from(window.fetch_with_str(url)).await.map_err(|e| io(format!("fetch failed: {e:?}")))?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|_| io("not a Response".into()))?;
    if !resp.ok() {
        return Err(io(format!("HTTP {} {}", resp.status(), resp.status_text())));
    }
    let buf = JsFuture::from(resp.array_buffer().map_err(|e| io(format!("{e:?}")))?).await.map_err(|e| io(format!("{e:?}")))?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

fn canvas_format(surface: &wgpu::Surface<'static>, adapter: &wgpu::Adapter) -> Result<wgpu::TextureFormat, Error> {
    let caps = surface.get_capabilities(adapter);
    [wgpu::TextureFormat::Rgba8Unorm, wgpu::TextureFormat::Bgra8Unorm]
        .into_iter()
        .find(|f| caps.formats.contains(f))
        .ok_or_else(|| Error::Gpu(format!("the canvas offers no 8-bit RGBA format ({:?})", caps.formats)))
}

/// Resolves when the queue has finished its work; fails (instead of hanging) if the device is lost.
async fn work_done(queue: &wgpu::Queue, lost: &std::sync::Arc<std::sync::atomic::AtomicBool>) -> Result<(), Error> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    queue.on_submitted_work_done(move || d.store(true, Ordering::SeqCst));
    while !done.load(Ordering::SeqCst) {
        if lost.load(Ordering::SeqCst) {
            return Err(Error::Gpu("the device was lost".into()));
        }
        sleep_ms(2).await;
    }
    Ok(())
}

/// Can this browser present a WebGPU canvas? Tried on a throwaway canvas and device: one clear,
/// one present, then a few frames' wait for a device loss.
async fn canvas_presentation_works() -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else { return false };
    let Some(canvas) = doc.create_element("canvas").ok().and_then(|e| e.dyn_into::<HtmlCanvasElement>().ok()) else { return false };
    canvas.set_width(8);
    canvas.set_height(8);
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let Ok(surface) = instance.create_surface(wgpu::SurfaceTarget::Canvas(canvas)) else { return false };
    let Ok(adapter) = request_adapter(&instance, Some(&surface)).await else { return false };
    let Ok(format) = canvas_format(&surface, &adapter) else { return false };
    let Ok((device, queue)) = adapter.request_device(&Default::default()).await else { return false };
    let lost = Arc::new(AtomicBool::new(false));
    let l = lost.clone();
    device.set_device_lost_callback(move |_, _| l.store(true, Ordering::SeqCst));
    surface.configure(&device, &wgpu::SurfaceConfiguration {
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT, format, width: 8, height: 8,
        present_mode: wgpu::PresentMode::Fifo, desired_maximum_frame_latency: 2,
        alpha_mode: wgpu::CompositeAlphaMode::Auto, view_formats: vec![], color_space: wgpu::SurfaceColorSpace::Auto,
    });
    let frame = match surface.get_current_texture() {
        wgpu::CurrentSurfaceTexture::Success(t) | wgpu::CurrentSurfaceTexture::Suboptimal(t) => t,
        _ => return false,
    };
    let view = frame.texture.create_view(&Default::default());
    let mut enc = device.create_command_encoder(&Default::default());
    enc.begin_render_pass(&wgpu::RenderPassDescriptor {
        label: Some("presentation probe"),
        color_attachments: &[Some(wgpu::RenderPassColorAttachment {
            view: &view, depth_slice: None, resolve_target: None,
            ops: wgpu::Operations { load: wgpu::LoadOp::Clear(wgpu::Color::BLACK), store: wgpu::StoreOp::Store },
        })],
        ..Default::default()
    });
    queue.submit([enc.finish()]);
    queue.present(frame);
    let ok = work_done(&queue, &lost).await.is_ok();
    for _ in 0..5 {
        sleep_ms(20).await;
    }
    device.destroy();
    ok && !lost.load(Ordering::SeqCst)
}

async fn gpu_for_canvas(canvas: &HtmlCanvasElement) -> Result<(GpuDevice, Present), Error> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    if canvas_presentation_works().await {
        let surface = instance
            .create_surface(wgpu::SurfaceTarget::Canvas(canvas.clone()))
            .map_err(|e| Error::Gpu(format!("cannot use the canvas for WebGPU: {e}")))?;
        let adapter = request_adapter(&instance, Some(&surface)).await?;
        let format = canvas_format(&surface, &adapter)?;
        Ok((GpuDevice::from_adapter(&adapter).await?, Present::Surface { surface, format }))
    } else {
        let adapter = request_adapter(&instance, None).await?;
        let ctx = context_2d(canvas)?;
        Ok((GpuDevice::from_adapter(&adapter).await?, Present::Readback(ctx)))
    }
}

fn context_2d(canvas: &HtmlCanvasElement) -> Result<web_sys::CanvasRenderingContext2d, Error> {
    canvas.get_context("2d").ok().flatten()
        .and_then(|c| c.dyn_into().ok())
        .ok_or_else(|| Error::Input("the canvas has no 2D context (was it already used for WebGPU?)".into()))
}

#[wasm_bindgen]
impl DdimSampler {
    /// Loads `config.json`, the safetensors weights and (optionally) `scheduler_config.json` from
    /// `base_url` (a diffusers model folder served over HTTP). `engine` is "webgpu" or "cpu".
    #[wasm_bindgen(js_name = fromUrl)]
    pub async fn from_url(canvas: HtmlCanvasElement, base_url: String, engine: String) -> Result<DdimSampler, JsValue> {
        let base = base_url.trim_end_matches('/');
        let config = fetch_bytes(&format!("{base}/config.json")).await.map_err(js_err)?;
        let weights = fetch_bytes(&format!("{base}/diffusion_pytorch_model.safetensors")).await.map_err(js_err)?;
        let sched = fetch_bytes(&format!("{base}/scheduler_config.json")).await.ok();
        let config = String::from_utf8(config).map_err(|_| js_err(Error::Config("config.json is not UTF-8".into())))?;
        Self::create(canvas, config, weights, sched.map(|b| String::from_utf8_lossy(&b).into_owned()), engine).await
    }

    /// Builds a sampler from the bytes of a diffusers model folder.
    pub async fn create(canvas: HtmlCanvasElement, config_json: String, weights: Vec<u8>, scheduler_json: Option<String>,
                        engine: String) -> Result<DdimSampler, JsValue> {
        let model = Model::from_bytes(&config_json, &weights, scheduler_json).map_err(js_err)?;
        let (engine, adapter) = match engine.as_str() {
            "webgpu" => {
                let (gpu, present) = gpu_for_canvas(&canvas).await.map_err(js_err)?;
                let mut adapter = [gpu.info.name.as_str(), gpu.info.driver.as_str(), gpu.info.driver_info.as_str()]
                    .iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join(", ");
                if adapter.is_empty() {
                    adapter = "WebGPU adapter (the browser does not name it)".into();
                }
                if matches!(present, Present::Readback(_)) {
                    adapter.push_str(" [frames shown by readback: this browser cannot present WebGPU canvases]");
                }
                let engine = GpuEngine::new(gpu, &model).map_err(js_err)?;
                (Engine::Gpu { engine, present }, adapter)
            }
            "cpu" => (Engine::Cpu, "CPU (Rust reference compiled to wasm)".to_string()),
            other => return Err(js_err(Error::Input(format!("engine {other:?}: expected \"webgpu\" or \"cpu\"")))),
        };
        let inner = Inner { model, canvas, engine: RefCell::new(engine), adapter, cancel: Cell::new(false), running: Cell::new(false), last: RefCell::new(None) };
        Ok(DdimSampler { inner: Rc::new(inner) })
    }

    /// The adapter (or "CPU …") this sampler runs on.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.inner.adapter.clone()
    }

    /// {parameters, sampleSize, inChannels, numClassEmbeds, storedDtype}
    #[wasm_bindgen(js_name = modelInfo)]
    pub fn model_info(&self) -> JsValue {
        let m = &self.inner.model;
        let o = Object::new();
        let set = |k: &str, v: JsValue| { let _ = Reflect::set(&o, &k.into(), &v); };
        set("parameters", (m.weights.parameter_count() as f64).into());
        set("sampleSize", m.config.sample_size.map(|s| s.0 as f64).into());
        set("inChannels", (m.config.in_channels as f64).into());
        set("numClassEmbeds", m.config.num_class_embeds.map(|k| k as f64).into());
        set("storedDtype", m.weights.stored_dtype.clone().into());
        o.into()
    }

    /// Stops a running `run` within one step (it then rejects with "cancelled").
    pub fn cancel(&self) {
        self.inner.cancel.set(true);
    }

    /// Samples with {steps, eta, seed, sampler: "ddim"|"ddpm", batch, classLabel, guidance,
    /// view: "xt"|"x0"}; calls `on_step({step, total, timestep, ms})` after each drawn step.
    pub fn run(&self, options: JsValue, on_step: Option<js_sys::Function>) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            if inner.running.replace(true) {
                return Err(js_err(Error::Input("a run is already in progress: cancel it first".into())));
            }
            inner.cancel.set(false);
            let result = run(&inner, &options, on_step.as_ref()).await;
            inner.running.set(false);
            result.map(|_| JsValue::UNDEFINED).map_err(js_err)
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
}

fn opt_f64(o: &JsValue, k: &str) -> Option<f64> {
    Reflect::get(o, &k.into()).ok().and_then(|v| v.as_f64())
}

fn opt_str(o: &JsValue, k: &str) -> Option<String> {
    Reflect::get(o, &k.into()).ok().and_then(|v| v.as_string())
}

fn options(o: &JsValue, model: &Model) -> Result<(SampleOptions, bool), Error> {
    let batch = opt_f64(o, "batch").unwrap_or(1.0);
    let steps = opt_f64(o, "steps").unwrap_or(50.0);
    if !(1.0..=4096.0).contains(&batch) || batch.fract() != 0.0 {
        return Err(Error::Input(format!("batch = {batch}: must be a whole number from 1")));
    }
    if steps < 0.0 || steps.fract() != 0.0 {
        return Err(Error::Input(format!("steps = {steps}: must be a whole number")));
    }
    let batch = batch as usize;
    let kind = match opt_str(o, "sampler").as_deref().unwrap_or("ddim") {
        "ddim" => SamplerKind::Ddim,
        "ddpm" => SamplerKind::Ddpm,
        other => return Err(Error::Input(format!("sampler {other:?}: expected ddim or ddpm"))),
    };
    let class = opt_f64(o, "classLabel");
    let class_labels = match (class, model.config.num_class_embeds) {
        (Some(c), Some(k)) if c >= 0.0 && (c as usize) < k && c.fract() == 0.0 => Some(vec![c as u32; batch]),
        (Some(c), Some(k)) => return Err(Error::Input(format!("class {c} out of range 0..{}", k - 1))),
        (None, Some(k)) => Some((0..batch).map(|i| (i % (k - 1).max(1)) as u32).collect()),
        (_, None) => None,
    };
    let opts = SampleOptions {
        kind, steps: steps as usize, eta: opt_f64(o, "eta").unwrap_or(0.0) as f32,
        seed: opt_f64(o, "seed").unwrap_or(0.0).max(0.0) as u64, batch, class_labels,
        guidance: opt_f64(o, "guidance").unwrap_or(0.0) as f32,
    };
    Ok((opts, opt_str(o, "view").as_deref() == Some("x0")))
}

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or(0.0)
}

/// Resolves after `ms` milliseconds (a macrotask: the browser paints and handles input meanwhile).
pub(crate) async fn sleep_ms(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = JsFuture::from(p).await;
}

async fn yield_to_browser() {
    sleep_ms(0).await;
}

fn report(cb: Option<&js_sys::Function>, info: StepInfo, ms: f64) {
    if let Some(cb) = cb {
        let o = Object::new();
        let _ = Reflect::set(&o, &"step".into(), &((info.index + 1) as f64).into());
        let _ = Reflect::set(&o, &"total".into(), &(info.total as f64).into());
        let _ = Reflect::set(&o, &"timestep".into(), &(info.timestep as f64).into());
        let _ = Reflect::set(&o, &"ms".into(), &ms.into());
        let _ = cb.call1(&JsValue::NULL, &o);
    }
}

async fn run(inner: &Inner, o: &JsValue, cb: Option<&js_sys::Function>) -> Result<(), Error> {
    let model = &inner.model;
    let (opts, view_x0) = options(o, model)?;
    let schedule = match &model.scheduler_config {
        Some(text) => Schedule::from_json(text)?,
        None => Schedule::new(Default::default())?,
    };
    let (h, w) = model.config.sample_size.ok_or_else(|| Error::Config("config has no sample_size".into()))?;
    let plan = RunPlan::new(model, &schedule, &opts, NoiseSource::Seed(opts.seed), h, w)?;
    let cols = grid_cols(opts.batch);
    let (gw, gh) = (cols * w, opts.batch.div_ceil(cols) * h);
    inner.canvas.set_width(gw as u32);
    inner.canvas.set_height(gh as u32);
    let mut engine = inner.engine.borrow_mut();
    let final_x = match &mut *engine {
        Engine::Gpu { engine, present } => run_gpu(inner, engine, present, plan, view_x0, cols, (gw, gh), cb).await?,
        Engine::Cpu => run_cpu(inner, model, plan, view_x0, cols, cb).await?,
    };
    *inner.last.borrow_mut() = Some(final_x);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_gpu(inner: &Inner, engine: &mut GpuEngine, present: &Present, plan: RunPlan, view_x0: bool, cols: usize,
                 (gw, gh): (usize, usize), cb: Option<&js_sys::Function>) -> Result<Tensor, Error> {
    let shape = plan.shape;
    let mut sampler = GpuSampler::new(engine, plan)?;
    let gpu = &engine.gpu;
    let presenter = match present {
        Present::Surface { surface, format } => {
            surface.configure(&gpu.device, &wgpu::SurfaceConfiguration {
                usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
                format: *format,
                width: gw as u32,
                height: gh as u32,
                present_mode: wgpu::PresentMode::Fifo,
                desired_maximum_frame_latency: 2,
                alpha_mode: wgpu::CompositeAlphaMode::Auto,
                view_formats: vec![],
                color_space: wgpu::SurfaceColorSpace::Auto,
            });
            let src = if view_x0 { &sampler.x0 } else { &sampler.x };
            Some((surface, SampleDrawer::new(gpu, src, shape, cols, *format)))
        }
        Present::Readback(_) => None,
    };
    let lost = gpu.lost_flag();
    loop {
        if inner.cancel.get() {
            return Err(Error::Cancelled);
        }
        let start = now_ms();
        let info = match &presenter {
            Some((surface, presenter)) => {
                let frame = match surface.get_current_texture() {
                    wgpu::CurrentSurfaceTexture::Success(t) | wgpu::CurrentSurfaceTexture::Suboptimal(t) => t,
                    other => return Err(Error::Gpu(format!("canvas texture unavailable: {other:?}"))),
                };
                let view = frame.texture.create_view(&Default::default());
                let info = sampler.step(gpu, |enc| presenter.draw(enc, &view))?;
                gpu.queue.present(frame);
                info
            }
            None => sampler.step(gpu, |_| {})?,
        };
        let Some(info) = info else { break };
        // Wait for this step's GPU work: honest ms/step, and never more than one step queued.
        work_done(&gpu.queue, &lost).await?;
        gpu.check()?;
        if let Present::Readback(ctx) = present {
            let shown = if view_x0 { sampler.read_x0(gpu).await? } else { sampler.read_x(gpu).await? };
            put_image(ctx, &shown, cols)?;
        }
        report(cb, info, now_ms() - start);
        yield_to_browser().await;
    }
    sampler.read_x(gpu).await
}

fn put_image(ctx: &web_sys::CanvasRenderingContext2d, x: &Tensor, cols: usize) -> Result<(), Error> {
    let (w, h, px) = grid_rgba(x, cols);
    let img = web_sys::ImageData::new_with_u8_clamped_array_and_sh(wasm_bindgen::Clamped(&px), w as u32, h as u32)
        .map_err(|e| Error::Input(format!("ImageData: {e:?}")))?;
    ctx.put_image_data(&img, 0.0, 0.0).map_err(|e| Error::Input(format!("putImageData: {e:?}")))
}

async fn run_cpu(inner: &Inner, model: &Model, plan: RunPlan, view_x0: bool, cols: usize, cb: Option<&js_sys::Function>) -> Result<Tensor, Error> {
    let ctx = context_2d(&inner.canvas)?;
    let mut s = CpuSampler::new(model, plan)?;
    loop {
        if inner.cancel.get() {
            return Err(Error::Cancelled);
        }
        let start = now_ms();
        let Some(info) = s.step()? else { break };
        let shown = Tensor::new(s.plan.shape.to_vec(), if view_x0 { s.x0.clone() } else { s.x.clone() })?;
        put_image(&ctx, &shown, cols)?;
        report(cb, info, now_ms() - start);
        yield_to_browser().await;
    }
    s.sample()
}
