//! Getting frames onto the page's `<canvas>`: WebGPU presentation (a render pass draws x_t into
//! the canvas texture, no readback) where the browser can present WebGPU canvases, otherwise
//! readback into a 2D context (the CPU engine always uses the 2D context).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use wasm_bindgen::{JsCast, JsValue};
use web_sys::{HtmlCanvasElement, OffscreenCanvas};

use crate::error::{Error, Result};
use crate::gpu::draw::SampleDrawer;
use crate::gpu::{request_adapter, GpuDevice};
use crate::image_grid::grid_rgba_mapped;
use crate::Tensor;

/// Where frames go: a page's `<canvas>`, or an `OffscreenCanvas` (the engine in a Web Worker
/// drawing to a canvas the page transferred with `transferControlToOffscreen`).
#[derive(Clone)]
pub enum Canvas {
    Html(HtmlCanvasElement),
    Offscreen(OffscreenCanvas),
}

impl Canvas {
    pub fn from_js(v: JsValue) -> Result<Self> {
        if v.is_instance_of::<OffscreenCanvas>() {
            return Ok(Canvas::Offscreen(v.unchecked_into()));
        }
        v.dyn_into::<HtmlCanvasElement>()
            .map(Canvas::Html)
            .map_err(|_| Error::Input("expected a <canvas> element or an OffscreenCanvas".into()))
    }

    pub fn set_size(&self, width: u32, height: u32) {
        match self {
            Canvas::Html(c) => {
                c.set_width(width);
                c.set_height(height);
            }
            Canvas::Offscreen(c) => {
                c.set_width(width);
                c.set_height(height);
            }
        }
    }

    fn surface_target(&self) -> wgpu::SurfaceTarget<'static> {
        match self {
            Canvas::Html(c) => wgpu::SurfaceTarget::Canvas(c.clone()),
            Canvas::Offscreen(c) => wgpu::SurfaceTarget::OffscreenCanvas(c.clone()),
        }
    }

    /// The canvas's 2D context (CPU-engine frames, WebGPU readback).
    pub fn context_2d(&self) -> Result<Context2d> {
        let none = || Error::Input("the canvas has no 2D context (was it already used for WebGPU?)".into());
        let ctx = match self {
            Canvas::Html(c) => c.get_context("2d").ok().flatten(),
            Canvas::Offscreen(c) => c.get_context("2d").ok().flatten(),
        }
        .ok_or_else(none)?;
        match self {
            Canvas::Html(_) => ctx.dyn_into().map(Context2d::Html).map_err(|_| none()),
            Canvas::Offscreen(_) => ctx.dyn_into().map(Context2d::Offscreen).map_err(|_| none()),
        }
    }
}

#[derive(Clone)]
pub enum Context2d {
    Html(web_sys::CanvasRenderingContext2d),
    Offscreen(web_sys::OffscreenCanvasRenderingContext2d),
}

/// How WebGPU frames reach the canvas.
pub enum FrameTarget {
    /// A render pass draws x_t straight into the canvas texture (no readback).
    Surface { surface: wgpu::Surface<'static>, format: wgpu::TextureFormat },
    /// The browser cannot present WebGPU canvases (seen: headless Chromium on SwiftShader loses the
    /// device at the first present), so each frame is read back and put into a 2D canvas.
    Readback(Context2d),
}

/// The canvas format: the browser's preferred one (wgpu lists it first), which the present shader
/// writes through the render target's swizzle. Never a non-preferred 8-bit format: Firefox 153
/// (headless, Linux) kills the whole browser at the first present of an `rgba8unorm` canvas that
/// is in the document while it prefers `bgra8unorm` (reproducer: tests/page/repro/).
fn canvas_format(surface: &wgpu::Surface<'static>, adapter: &wgpu::Adapter) -> Result<wgpu::TextureFormat> {
    let caps = surface.get_capabilities(adapter);
    caps.formats
        .first()
        .copied()
        .filter(|f| matches!(f, wgpu::TextureFormat::Rgba8Unorm | wgpu::TextureFormat::Bgra8Unorm))
        .ok_or_else(|| Error::Gpu(format!("the canvas's preferred format is not 8-bit RGBA or BGRA ({:?})", caps.formats)))
}

fn surface_config(format: wgpu::TextureFormat, width: u32, height: u32) -> wgpu::SurfaceConfiguration {
    wgpu::SurfaceConfiguration {
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
        format,
        width,
        height,
        present_mode: wgpu::PresentMode::Fifo,
        desired_maximum_frame_latency: 2,
        alpha_mode: wgpu::CompositeAlphaMode::Auto,
        view_formats: vec![],
        color_space: wgpu::SurfaceColorSpace::Auto,
    }
}

/// Can this browser present a WebGPU canvas? Tried on a throwaway canvas and device: one clear,
/// one present, then a few frames' wait for a device loss.
async fn canvas_presentation_works() -> bool {
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
    surface.configure(&device, &surface_config(format, 8, 8));
    let frame = match surface.get_current_texture() {
        wgpu::CurrentSurfaceTexture::Success(t) | wgpu::CurrentSurfaceTexture::Suboptimal(t) => t,
        _ => return false,
    };
    let view = frame.texture.create_view(&Default::default());
    let mut enc = device.create_command_encoder(&Default::default());
    enc.begin_render_pass(&wgpu::RenderPassDescriptor {
        label: Some("presentation probe"),
        color_attachments: &[Some(wgpu::RenderPassColorAttachment {
            view: &view,
            depth_slice: None,
            resolve_target: None,
            ops: wgpu::Operations { load: wgpu::LoadOp::Clear(wgpu::Color::BLACK), store: wgpu::StoreOp::Store },
        })],
        ..Default::default()
    });
    queue.submit([enc.finish()]);
    queue.present(frame);
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    queue.on_submitted_work_done(move || d.store(true, Ordering::SeqCst));
    for _ in 0..500 {
        if done.load(Ordering::SeqCst) || lost.load(Ordering::SeqCst) {
            break;
        }
        crate::event_loop::sleep_ms(2).await;
    }
    for _ in 0..5 {
        crate::event_loop::sleep_ms(20).await;
    }
    device.destroy();
    done.load(Ordering::SeqCst) && !lost.load(Ordering::SeqCst)
}

/// A device for `canvas` and how its frames will be shown. `presents`: whether this browser can
/// present WebGPU canvases, if the caller knows (a worker has no document to probe with: the page
/// probes and says); None probes here.
pub async fn gpu_for_canvas(canvas: &Canvas, presents: Option<bool>) -> Result<(GpuDevice, FrameTarget)> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let presents = match presents {
        Some(p) => p,
        None => canvas_presentation_works().await,
    };
    if presents {
        let surface =
            instance.create_surface(canvas.surface_target()).map_err(|e| Error::Gpu(format!("cannot use the canvas for WebGPU: {e}")))?;
        let adapter = request_adapter(&instance, Some(&surface)).await?;
        let format = canvas_format(&surface, &adapter)?;
        Ok((GpuDevice::from_adapter(&adapter).await?, FrameTarget::Surface { surface, format }))
    } else {
        let adapter = request_adapter(&instance, None).await?;
        Ok((GpuDevice::from_adapter(&adapter).await?, FrameTarget::Readback(canvas.context_2d()?)))
    }
}

/// A new device for a canvas whose device was lost, keeping its frame target: a canvas's context
/// cannot be asked for again everywhere (Firefox refuses `getContext` a second time on a worker's
/// OffscreenCanvas), and a surface is not tied to a device.
pub async fn new_gpu_for_target(target: FrameTarget) -> Result<(GpuDevice, FrameTarget)> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let surface = match &target {
        FrameTarget::Surface { surface, .. } => Some(surface),
        FrameTarget::Readback(_) => None,
    };
    let adapter = request_adapter(&instance, surface).await?;
    Ok((GpuDevice::from_adapter(&adapter).await?, target))
}

/// Puts a batch, as a grid of `cols` columns, into a 2D context from column `left` (`signed`: on
/// the signed colour map of that scale, as `SampleDrawer`).
pub fn put_image(ctx: &Context2d, x: &Tensor, cols: usize, signed: Option<f32>, left: usize) -> Result<()> {
    let (w, h, px) = grid_rgba_mapped(x, cols, signed);
    let img = web_sys::ImageData::new_with_u8_clamped_array_and_sh(wasm_bindgen::Clamped(&px), w as u32, h as u32)
        .map_err(|e| Error::Input(format!("ImageData: {e:?}")))?;
    match ctx {
        Context2d::Html(c) => c.put_image_data(&img, left as f64, 0.0),
        Context2d::Offscreen(c) => c.put_image_data(&img, left as f64, 0.0),
    }
    .map_err(|e| Error::Input(format!("putImageData: {e:?}")))
}

/// Draws GPU buffers into the canvas texture, frame after frame: one panel per view.
pub struct SurfaceFrames<'a> {
    surface: &'a wgpu::Surface<'static>,
    drawers: Vec<SampleDrawer>,
}

impl<'a> SurfaceFrames<'a> {
    /// Configures the surface for a `width`×`height` target whose panels `drawers` draw (made
    /// for `format`).
    pub fn new(
        gpu: &GpuDevice,
        surface: &'a wgpu::Surface<'static>,
        format: wgpu::TextureFormat,
        (width, height): (u32, u32),
        drawers: Vec<SampleDrawer>,
    ) -> Self {
        surface.configure(&gpu.device, &surface_config(format, width, height));
        SurfaceFrames { surface, drawers }
    }

    /// One frame: draw and present.
    pub fn show(&self, gpu: &GpuDevice) -> Result<()> {
        let frame = match self.surface.get_current_texture() {
            wgpu::CurrentSurfaceTexture::Success(t) | wgpu::CurrentSurfaceTexture::Suboptimal(t) => t,
            other => return Err(Error::Gpu(format!("canvas texture unavailable: {other:?}"))),
        };
        let view = frame.texture.create_view(&Default::default());
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for (k, d) in self.drawers.iter().enumerate() {
            d.draw_panel(&mut enc, &view, k == 0);
        }
        gpu.queue.submit([enc.finish()]);
        gpu.queue.present(frame);
        gpu.check()
    }
}
