//! The GPU side: `GpuDevice` (device, queue, one compute pipeline per WGSL shader, buffers),
//! `pool` (activation buffers and their planning), `weights` (upload and packing), `recorder`
//! (dispatches recorded over pooled buffers), `ops` (one file per shader: its params, dispatch and
//! the `UNetOps` of the recorder), `unet` (a forward recorded once per shape and the uploaded
//! model, `GpuUNet`), `engine` (the run layer's GPU engine) and `draw` (x_t → canvas).
//! No blocking calls: readbacks are `async` (native code drives them with pollster at the edges).

pub mod classifier;
pub mod draw;
pub mod engine;
pub mod ops;
pub mod params;
pub mod pool;
pub mod recorder;
pub mod unet;
pub mod weights;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Every shader of the engine, by file name, with its entry points.
pub const SHADERS: &[(&str, &str, &[&str])] = &[
    // conv2d.wgsl is the part both conv algorithms share, composed in front of each.
    (
        "conv2d_gemm",
        concat!(include_str!("../../shaders/conv2d.wgsl"), include_str!("../../shaders/conv2d_gemm.wgsl")),
        &["im2col", "im2col_norm", "gemm", "gemm4x4"],
    ),
    (
        "conv2d_winograd",
        concat!(include_str!("../../shaders/conv2d.wgsl"), include_str!("../../shaders/conv2d_winograd.wgsl")),
        &["winograd_weights", "winograd_input", "winograd_input_norm", "winograd_output"],
    ),
    ("group_norm", include_str!("../../shaders/group_norm.wgsl"), &["stats", "combine", "apply"]),
    ("linear", include_str!("../../shaders/linear.wgsl"), &["main"]),
    ("timestep_embedding", include_str!("../../shaders/timestep_embedding.wgsl"), &["main", "fourier"]),
    ("class_embedding", include_str!("../../shaders/class_embedding.wgsl"), &["main"]),
    ("affine", include_str!("../../shaders/affine.wgsl"), &["main"]),
    ("concat_channels", include_str!("../../shaders/concat_channels.wgsl"), &["main"]),
    ("attention", include_str!("../../shaders/attention.wgsl"), &["scores", "softmax", "apply"]),
    ("scheduler_step", include_str!("../../shaders/scheduler_step.wgsl"), &["main"]),
    ("upfirdn2d", include_str!("../../shaders/upfirdn2d.wgsl"), &["main"]),
    ("activation", include_str!("../../shaders/activation.wgsl"), &["main", "film"]),
    ("embedding", include_str!("../../shaders/embedding.wgsl"), &["main"]),
    ("add", include_str!("../../shaders/add.wgsl"), &["main"]),
    ("divide_by_timestep", include_str!("../../shaders/divide_by_timestep.wgsl"), &["main"]),
    ("avg_pool2d", include_str!("../../shaders/avg_pool2d.wgsl"), &["main", "backward"]),
    ("group_norm_backward", include_str!("../../shaders/group_norm_backward.wgsl"), &["main"]),
    ("log_softmax_backward", include_str!("../../shaders/log_softmax_backward.wgsl"), &["main"]),
];

/// The pipeline of `entry` in shader file `name`, with its overridable `constants`.
/// conv2d_gemm.wgsl's GEMM entries (`gemm`, `gemm4x4`): built with the `GEMM_WG` constant.
fn is_conv_gemm(shader: &str, entry: &str) -> bool {
    shader == "conv2d_gemm" && entry.starts_with("gemm")
}

fn compute_pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    name: &str,
    entry: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&format!("{name}.{entry}")),
        layout: None,
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
        cache: None,
    })
}

/// The render shader that draws a sample into a canvas (`sampler::SampleDrawer`).
pub const PRESENT_SHADER: &str = include_str!("../../shaders/present.wgsl");

/// A device, its queue, and the engine's pipelines (built once).
pub struct GpuDevice {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// How conv2d runs on this adapter (`ops::conv2d`).
    pub conv: ConvPolicy,
    /// Conv weights uploaded as f16 (`set_f16_weights`; off by default).
    pub f16_weights: bool,
    pipelines: std::collections::HashMap<String, wgpu::ComputePipeline>,
    /// First uncaptured error or device loss, reported by the next call that checks.
    fault: Arc<Mutex<Option<String>>>,
    lost: Arc<std::sync::atomic::AtomicBool>,
    /// Buffers this device made and has not released, and their bytes (`live_buffers`). On the
    /// web dropping a buffer frees nothing until garbage collection, so the engine releases what
    /// it is done with explicitly and `destroy` frees the rest at once.
    live: Arc<LiveBuffers>,
}

/// How conv2d runs: its algorithms, tiles and scratch budgets, chosen per adapter in
/// `GpuDevice::from_device` (tests and `ddim bench` set them to run each path).
#[derive(Clone, Debug)]
pub struct ConvPolicy {
    /// The largest im2col buffer a conv uses at once; a conv whose patches need more runs in
    /// chunks of output pixels (tests set a small value to run every shape in chunks).
    pub col_max_bytes: u64,
    /// Invocations per workgroup of conv2d_gemm.wgsl's GEMMs (their `GEMM_WG`): 16 on CPU adapters, 64
    /// elsewhere. Changed with `GpuDevice::set_gemm`, which rebuilds the pipelines.
    pub gemm_workgroup: u32,
    /// Output channels × pixels per invocation of the conv GEMM, 8 (`gemm`) on CPU adapters and 4
    /// (`gemm4x4`) elsewhere: see `conv_gemm_entry`. Changed with `GpuDevice::set_gemm`.
    pub gemm_tile: u32,
    /// 3×3 stride-1 convs as Winograd F(2×2, 3×3) where the GEMM tile is 8 (on CPU adapters: 2.25×
    /// fewer multiplies; the GPUs' 4×4 GEMM is not batched over the 16 transforms).
    pub winograd: bool,
    /// At most this many 2×2 tiles per chunk of a Winograd conv (tests set a small value to run
    /// every shape in chunks; the patch budget decides otherwise).
    pub winograd_tiles: usize,
    /// Winograd's transformed 3×3 weights are kept beside the model's (made once at upload) when
    /// all of them fit in this many bytes, 32 MiB: small models, where they cost little and
    /// transforming them per forward cost ~15 % of the bundled model's conv time on lavapipe.
    /// Larger models transform each conv's into scratch. Tests set 0 to run that path.
    pub winograd_resident_bytes: u64,
}

/// Counts of the buffers a device made and has not released (shared: the browser API reads it
/// while a run holds the engine).
#[derive(Default)]
pub struct LiveBuffers {
    count: AtomicU64,
    bytes: AtomicU64,
}

impl LiveBuffers {
    /// (buffers, bytes).
    pub fn get(&self) -> (u64, u64) {
        (self.count.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

impl GpuDevice {
    /// Requests the best adapter available and a device with the adapter's own limits.
    pub async fn new() -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        Self::from_adapter(&request_adapter(&instance, None).await?).await
    }

    pub async fn from_adapter(adapter: &wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("ddim-webgpu"),
                // shader-f16 where the adapter has it, for the optional f16 conv weights.
                required_features: adapter.features() & wgpu::Features::SHADER_F16,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("request_device failed: {e}")))?;
        Self::from_device(device, queue, info, limits).await
    }

    pub async fn from_device(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo, limits: wgpu::Limits) -> Result<Self> {
        let fault = Arc::new(Mutex::new(None::<String>));
        let f = fault.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = f.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        let f = fault.clone();
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let l = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            l.store(true, std::sync::atomic::Ordering::SeqCst);
            let mut slot = f.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| format!("the GPU device was lost ({reason:?}: {msg})"));
        });
        // The CPU adapters (lavapipe, SwiftShader: `Cpu`, a fallback adapter on the web) run a
        // workgroup on one thread; smaller conv GEMM workgroups let small convs use every core.
        // They run 8×8 tiles fastest (loads are lane by lane); GPUs want 4× more invocations.
        let on_cpu = info.device_type == wgpu::DeviceType::Cpu;
        let (gemm_workgroup, gemm_tile) = if on_cpu { (16, 8) } else { (64, 4) };
        let gemm_constants = [("GEMM_WG", gemm_workgroup as f64)];
        let mut pipelines = std::collections::HashMap::new();
        for (name, source, entries) in SHADERS {
            // One error scope per shader file, so a failure names its file.
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl((*source).into()),
            });
            for entry in entries.iter() {
                let constants: &[_] = if is_conv_gemm(name, entry) { &gemm_constants } else { &[] };
                pipelines.insert(format!("{name}.{entry}"), compute_pipeline(&device, &module, name, entry, constants));
            }
            if let Some(e) = scope.pop().await {
                return Err(Error::Gpu(format!("building the compute pipelines of {name}.wgsl failed: {e}")));
            }
        }
        let conv = ConvPolicy {
            // 32 MiB: a 256×256 model's transient patches stay a small part of its memory (64 MiB
            // cost it 50 MB more at a quarter fewer dispatches).
            col_max_bytes: 32 << 20,
            gemm_workgroup,
            gemm_tile,
            winograd: on_cpu,
            winograd_tiles: usize::MAX,
            winograd_resident_bytes: 32 << 20,
        };
        Ok(GpuDevice { device, queue, info, limits, conv, f16_weights: false, pipelines, fault, lost, live: Arc::default() })
    }

    /// One line naming the adapter, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)".
    pub fn adapter_name(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }

    pub(crate) fn pipeline(&self, name: &str) -> &wgpu::ComputePipeline {
        &self.pipelines[name]
    }

    /// Set once the device is lost (lets waits give up instead of hanging).
    pub fn lost_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.lost.clone()
    }

    /// The first uncaptured GPU error or device loss since the device was made, if any. A lost
    /// device is reported as lost even when an error about it came first ("parent device is
    /// lost"): the page and the widget recognise the words and make a new device.
    pub fn check(&self) -> Result<()> {
        let fault = self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match fault {
            Some(msg) if self.lost.load(Ordering::SeqCst) && !msg.starts_with("the GPU device was") => {
                Err(Error::Gpu(format!("the GPU device was lost ({msg})")))
            }
            Some(msg) => Err(Error::Gpu(msg)),
            None => Ok(()),
        }
    }

    /// Whether the device was lost (or destroyed): a new one is needed.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// A buffer, counted in `live_buffers` until `release`d or the device is destroyed.
    fn create_buffer(&self, desc: &wgpu::BufferDescriptor) -> wgpu::Buffer {
        self.live.count.fetch_add(1, Ordering::Relaxed);
        self.live.bytes.fetch_add(desc.size, Ordering::Relaxed);
        self.device.create_buffer(desc)
    }

    /// Frees a buffer the engine is done with now (on the web, dropping it would wait for GC).
    pub fn release(&self, buffer: wgpu::Buffer) {
        // After `destroy` the counts are already 0: saturate rather than wrap.
        let sub = |c: &AtomicU64, n: u64| c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
        let _ = sub(&self.live.count, 1);
        let _ = sub(&self.live.bytes, buffer.size());
        buffer.destroy();
    }

    /// (buffers, bytes) this device made and has not released.
    pub fn live_buffers(&self) -> (u64, u64) {
        self.live.get()
    }

    /// The shared counter behind `live_buffers`.
    pub fn live(&self) -> Arc<LiveBuffers> {
        self.live.clone()
    }

    /// Frees every resource of the device at once; it is unusable afterwards (a later call
    /// reports "device lost (Destroyed)").
    pub fn destroy(&self) {
        self.fault.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| "the GPU device was destroyed".into());
        self.device.destroy();
        self.live.count.store(0, Ordering::Relaxed);
        self.live.bytes.store(0, Ordering::Relaxed);
    }

    /// Lowers the largest buffer the engine will make to `bytes` (never raises it): checks that a
    /// model fits a smaller GPU than this one (the CLI's `--max-buffer-bytes`, the limit tests).
    pub fn cap_buffer_bytes(&mut self, bytes: u64) {
        self.limits.max_storage_buffer_binding_size = self.limits.max_storage_buffer_binding_size.min(bytes);
        self.limits.max_buffer_size = self.limits.max_buffer_size.min(bytes);
    }

    /// The largest storage buffer the engine may make (the per-binding and per-buffer limits).
    pub fn max_buffer_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// Refuses `bytes` for `what` if it is over `max_buffer_bytes`, naming the limit.
    pub fn check_buffer_bytes(&self, bytes: u64, what: &str) -> Result<()> {
        let max = self.max_buffer_bytes();
        if bytes > max {
            return Err(Error::Limits(format!("{what} needs a {bytes}-byte buffer; this adapter allows {max} bytes per storage binding")));
        }
        Ok(())
    }

    /// A storage buffer of `bytes`, checked against the device's per-binding limit.
    pub fn storage_buffer(&self, bytes: u64, what: &str) -> Result<wgpu::Buffer> {
        self.check_buffer_bytes(bytes, what)?;
        Ok(self.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes.max(16).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer holding `data` as f16 (rounded to nearest).
    pub fn upload_f16(&self, data: &[f32], what: &str) -> Result<wgpu::Buffer> {
        let halves: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
        let buf = self.storage_buffer((halves.len() * 2) as u64, what)?;
        if !halves.is_empty() {
            self.queue.write_buffer(&buf, 0, bytemuck::cast_slice(&halves));
        }
        Ok(buf)
    }

    /// A storage buffer holding `data`.
    pub fn upload(&self, data: &[f32], what: &str) -> Result<wgpu::Buffer> {
        let buf = self.storage_buffer((data.len() * 4) as u64, what)?;
        if !data.is_empty() {
            self.queue.write_buffer(&buf, 0, bytemuck::cast_slice(data));
        }
        Ok(buf)
    }

    /// A uniform buffer holding a kernel's parameters (their size is a multiple of 16 bytes: the
    /// reflection test checks each struct against its WGSL twin).
    pub fn params<P: params::KernelParams>(&self, p: &P) -> wgpu::Buffer {
        let bytes = bytemuck::bytes_of(p);
        let buf = self.create_buffer(&wgpu::BufferDescriptor {
            label: Some(P::SHADER),
            size: bytes.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buf, 0, bytes);
        buf
    }

    /// A bind group for `pipeline` with (binding, buffer) pairs.
    pub(crate) fn bind(&self, pipeline: &str, entries: &[(u32, &wgpu::Buffer)]) -> wgpu::BindGroup {
        let layout = self.pipeline(pipeline).get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> =
            entries.iter().map(|(binding, buf)| wgpu::BindGroupEntry { binding: *binding, resource: buf.as_entire_binding() }).collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(pipeline), layout: &layout, entries: &entries })
    }

    // Natively the queue is idle before the loop, so it runs once; on the web it polls.
    #[cfg_attr(not(target_arch = "wasm32"), allow(clippy::never_loop))]
    /// Copies the first `count` f32 of `buffer` back to the host (async; for tests, PNG export, CLI).
    pub async fn read(&self, buffer: &wgpu::Buffer, count: usize) -> Result<Vec<f32>> {
        let bytes = (count * 4) as u64;
        let staging = self.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes.max(4));
        self.queue.submit([enc.finish()]);
        let (tx, mut rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        let result = async {
            self.wait();
            // Poll instead of awaiting: a lost device never calls back, and nothing may hang.
            let mapped = loop {
                match rx.try_recv() {
                    Ok(Some(r)) => break r,
                    Ok(None) => {}
                    Err(_) => {
                        self.check()?;
                        return Err(Error::Gpu("readback was dropped (device lost?)".into()));
                    }
                }
                self.check()?;
                #[cfg(target_arch = "wasm32")]
                crate::event_loop::sleep_ms(1).await;
                #[cfg(not(target_arch = "wasm32"))]
                return Err(Error::Gpu("readback did not complete after the queue went idle".into()));
            };
            if let Err(e) = mapped {
                self.check()?;
                return Err(Error::Gpu(format!("readback failed: {e}")));
            }
            self.check()?;
            let view = staging.get_mapped_range(..).map_err(|e| Error::Gpu(format!("readback map: {e:?}")))?;
            let out = bytemuck::cast_slice::<u8, f32>(&view)[..count].to_vec();
            drop(view);
            staging.unmap();
            Ok(out)
        }
        .await;
        self.release(staging);
        match result {
            Err(e) => Err(self.loss_or(e).await),
            ok => ok,
        }
    }

    /// A failed readback is often the first sign of a lost device, and a browser may report the
    /// loss a moment after the failure (Firefox): wait up to half a second for it, so the error
    /// says "lost" rather than naming the symptom.
    async fn loss_or(&self, e: Error) -> Error {
        #[cfg(target_arch = "wasm32")]
        for _ in 0..50 {
            if self.is_lost() {
                break;
            }
            crate::event_loop::sleep_ms(10).await;
        }
        match self.check() {
            Err(lost) if self.is_lost() => lost,
            _ => e,
        }
    }

    /// Runs `f` (which records or creates GPU objects) inside a validation error scope, then pops
    /// and awaits the scope: an error it captured is returned, naming `what`.
    pub async fn validated<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let result = f();
        let captured = scope.pop().await;
        let value = result?;
        match captured {
            Some(e) => Err(Error::Gpu(format!("{what}: {e}"))),
            None => Ok(value),
        }
    }

    /// Resolves when the queue has finished its submitted work; fails (instead of hanging) on a
    /// device loss or an uncaptured error.
    pub async fn idle(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.wait();
        #[cfg(target_arch = "wasm32")]
        {
            use std::sync::atomic::{AtomicBool, Ordering};
            let done = Arc::new(AtomicBool::new(false));
            let d = done.clone();
            self.queue.on_submitted_work_done(move || d.store(true, Ordering::SeqCst));
            while !done.load(Ordering::SeqCst) {
                if self.lost.load(Ordering::SeqCst) {
                    break;
                }
                crate::event_loop::sleep_ms(2).await;
            }
        }
        self.check()
    }

    /// Natively, block until the queue is idle (on the web the browser's event loop does this).
    pub fn wait(&self) {
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
    }
}

/// The high-performance adapter, compatible with `surface` when one is given.
pub async fn request_adapter(instance: &wgpu::Instance, surface: Option<&wgpu::Surface<'static>>) -> Result<wgpu::Adapter> {
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            compatible_surface: surface,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Gpu(format!("no WebGPU adapter: {e}")))
}

/// Workgroup counts (x, y) for `groups` 1-D workgroups within the 65535-per-dimension limit; kernels
/// rebuild the linear index as wid.x + wid.y·nwg.x.
pub(crate) fn grid(groups: u32) -> [u32; 3] {
    let x = groups.clamp(1, 65535);
    [x, groups.div_ceil(x).max(1), 1]
}
