//! Draws a sample buffer into a texture (a canvas's, or any render target) with
//! `shaders/present.wgsl`: one render pass reading x_t (or x̂₀) straight from its storage buffer.

use super::GpuDevice;
use crate::kernel_params;

kernel_params!(DrawParams for "present" {
    n: u32, c: u32, h: u32, w: u32,
    cols: u32, rows: u32, signed: u32, scale: f32,
    offset: u32, minus: u32, second: u32, weight: f32,
    left: u32,
});

/// How a buffer is drawn: plain ([−1, 1] levels) or on the signed map of v/scale; where in the
/// buffer the tensor starts (`offset`, in values); and `minus` = (second, w): draw
/// w·(x[i] − x[second + i]) (classifier-free guidance's term from the U-Net's two halves).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Look {
    pub signed: Option<f32>,
    pub offset: usize,
    pub minus: Option<(usize, f32)>,
}

pub struct SampleDrawer {
    pipeline: wgpu::RenderPipeline,
    bind_group: wgpu::BindGroup,
    /// The panel: first column, width, height.
    rect: (u32, u32, u32),
}

impl SampleDrawer {
    /// `src` holds `shape` = [N,C,H,W] (as `look` says); the grid has `cols` columns; `format` is
    /// the target's.
    pub fn new(gpu: &GpuDevice, src: &wgpu::Buffer, shape: [usize; 4], cols: usize, format: wgpu::TextureFormat, look: Look) -> Self {
        Self::panel(gpu, src, (shape, cols), format, look, 0)
    }

    /// `new` for a panel whose first column in the target is `left` (views side by side).
    pub fn panel(
        gpu: &GpuDevice,
        src: &wgpu::Buffer,
        (shape, cols): ([usize; 4], usize),
        format: wgpu::TextureFormat,
        look: Look,
        left: u32,
    ) -> Self {
        let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("present"),
            source: wgpu::ShaderSource::Wgsl(super::PRESENT_SHADER.into()),
        });
        let pipeline = gpu.device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("present"),
            layout: None,
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState { format, blend: None, write_mask: wgpu::ColorWrites::ALL })],
            }),
            primitive: Default::default(),
            depth_stencil: None,
            multisample: Default::default(),
            multiview_mask: None,
            cache: None,
        });
        let [n, c, h, w] = shape;
        let dim32 = |v: usize| v as u32;
        let params = gpu.params(&DrawParams {
            n: dim32(n),
            c: dim32(c),
            h: dim32(h),
            w: dim32(w),
            cols: dim32(cols),
            rows: dim32(n.div_ceil(cols)),
            signed: look.signed.is_some() as u32,
            scale: look.signed.unwrap_or(1.0),
            offset: dim32(look.offset),
            minus: look.minus.is_some() as u32,
            second: dim32(look.minus.map_or(0, |(s, _)| s)),
            weight: look.minus.map_or(0.0, |(_, w)| w),
            left,
        });
        let layout = pipeline.get_bind_group_layout(0);
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("present"),
            layout: &layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: src.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: params.as_entire_binding() },
            ],
        });
        SampleDrawer { pipeline, bind_group, rect: (left, (cols * w) as u32, (n.div_ceil(cols) * h) as u32) }
    }

    /// Records the draw into `view`.
    pub fn draw(&self, enc: &mut wgpu::CommandEncoder, view: &wgpu::TextureView) {
        self.draw_panel(enc, view, true)
    }

    /// Records the draw into its panel of `view`; `clear`: the whole target is cleared first
    /// (the first panel of a frame).
    pub fn draw_panel(&self, enc: &mut wgpu::CommandEncoder, view: &wgpu::TextureView, clear: bool) {
        let load = if clear { wgpu::LoadOp::Clear(wgpu::Color::BLACK) } else { wgpu::LoadOp::Load };
        let mut pass = enc.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("present"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations { load, store: wgpu::StoreOp::Store },
            })],
            ..Default::default()
        });
        let (left, w, h) = self.rect;
        if left > 0 {
            pass.set_viewport(left as f32, 0.0, w as f32, h as f32, 0.0, 1.0);
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.draw(0..3, 0..1);
    }
}
