//! The sampling loop on the GPU: x_t never leaves the device. Each step is one submission:
//! copy x_t into the program's input (twice when guiding), the recorded U-Net, the fused
//! DDIM/DDPM update, and (optionally) a render pass drawing x_t or predicted x0 into a canvas.

use std::rc::Rc;

use super::program::{GpuEngine, UNetProgram};
use super::{grid, Gpu};
use crate::error::Result;
use crate::sampler::{RunPlan, StepInfo};

pub struct GpuSampler {
    pub plan: RunPlan,
    program: Rc<UNetProgram>,
    pub x: wgpu::Buffer,
    pub x0: wgpu::Buffer,
    noise: wgpu::Buffer,
    step_groups: Vec<wgpu::BindGroup>,
    next: usize,
}

impl GpuSampler {
    pub fn new(engine: &mut GpuEngine, plan: RunPlan) -> Result<Self> {
        let [_, _, h, w] = plan.shape;
        let program = engine.program(plan.unet_batch(), h, w)?;
        let gpu = &engine.gpu;
        let count = plan.count();
        let x = gpu.upload(&plan.noise.x_t(count)?, "x_t")?;
        let x0 = gpu.storage_buffer((count * 4) as u64, "predicted x0")?;
        let noise = gpu.storage_buffer((count * 4) as u64, "step noise")?;
        let guiding = plan.guidance.doubles_batch() as u32;
        let step_groups = plan.steps.iter().map(|s| {
            let c = s.coeffs;
            let words = [count as u32, guiding, plan.guidance.weight.to_bits(), c.clip.to_bits(),
                         c.x0_x.to_bits(), c.x0_m.to_bits(), c.eps_x.to_bits(), c.eps_m.to_bits(),
                         c.c_x0.to_bits(), c.c_eps.to_bits(), c.c_x.to_bits(), c.c_noise.to_bits()];
            let params = gpu.params(&words);
            gpu.bind("ddim_step.main", &[(0, program.out.buffer()), (1, &noise), (2, &x), (3, &x0), (4, &params)])
        }).collect();
        gpu.check()?;
        Ok(GpuSampler { plan, program, x, x0, noise, step_groups, next: 0 })
    }

    pub fn done(&self) -> bool {
        self.next >= self.plan.steps.len()
    }

    /// Encodes and submits the next step; `extra` may append work (e.g. drawing the frame) to the
    /// same submission after the step's compute pass.
    pub fn step(&mut self, gpu: &Gpu, extra: impl FnOnce(&mut wgpu::CommandEncoder)) -> Result<Option<StepInfo>> {
        let Some(step) = self.plan.steps.get(self.next).copied() else { return Ok(None) };
        let i = self.next;
        let count = self.plan.count();
        if step.coeffs.c_noise != 0.0 {
            gpu.queue.write_buffer(&self.noise, 0, bytemuck::cast_slice(&self.plan.noise.step(i, count)?));
        }
        let ub = self.plan.unet_batch();
        self.program.write_conditioning(gpu, &vec![step.timestep as f32; ub], self.plan.guidance.unet_labels.as_deref());
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let bytes = (count * 4) as u64;
        enc.copy_buffer_to_buffer(&self.x, 0, self.program.sample.buffer(), 0, bytes);
        if ub != self.plan.shape[0] {
            enc.copy_buffer_to_buffer(&self.x, 0, self.program.sample.buffer(), bytes, bytes);
        }
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.program.encode(&mut pass);
            pass.set_pipeline(gpu.pipeline("ddim_step.main"));
            pass.set_bind_group(0, &self.step_groups[i], &[]);
            let g = grid(count.div_ceil(64) as u32);
            pass.dispatch_workgroups(g[0], g[1], g[2]);
        }
        extra(&mut enc);
        gpu.queue.submit([enc.finish()]);
        self.next += 1;
        gpu.check()?;
        Ok(Some(StepInfo { index: i, total: self.plan.steps.len(), timestep: step.timestep }))
    }

    /// x_t (or the final sample) back on the host.
    pub async fn read_x(&self, gpu: &Gpu) -> Result<crate::Tensor> {
        crate::Tensor::new(self.plan.shape.to_vec(), gpu.read(&self.x, self.plan.count()).await?)
    }

    pub async fn read_x0(&self, gpu: &Gpu) -> Result<crate::Tensor> {
        crate::Tensor::new(self.plan.shape.to_vec(), gpu.read(&self.x0, self.plan.count()).await?)
    }
}

/// Draws a sample buffer into a surface texture with `shaders/present.wgsl`: one render pass,
/// reading x_t (or predicted x0) straight from its storage buffer.
pub struct Presenter {
    pipeline: wgpu::RenderPipeline,
    bind_group: wgpu::BindGroup,
}

impl Presenter {
    /// `src` holds `shape` = [N,C,H,W]; the grid has `cols` columns; `format` is the target's.
    pub fn new(gpu: &Gpu, src: &wgpu::Buffer, shape: [usize; 4], cols: usize, format: wgpu::TextureFormat) -> Self {
        let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("present"),
            source: wgpu::ShaderSource::Wgsl(super::PRESENT_SHADER.into()),
        });
        let pipeline = gpu.device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("present"),
            layout: None,
            vertex: wgpu::VertexState { module: &module, entry_point: Some("vs_main"), compilation_options: Default::default(), buffers: &[] },
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
        let params = gpu.params(&[n as u32, c as u32, h as u32, w as u32, cols as u32, n.div_ceil(cols) as u32, 0, 0]);
        let layout = pipeline.get_bind_group_layout(0);
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("present"),
            layout: &layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: src.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: params.as_entire_binding() },
            ],
        });
        Presenter { pipeline, bind_group }
    }

    /// Records the draw into `view`.
    pub fn draw(&self, enc: &mut wgpu::CommandEncoder, view: &wgpu::TextureView) {
        let mut pass = enc.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("present"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations { load: wgpu::LoadOp::Clear(wgpu::Color::BLACK), store: wgpu::StoreOp::Store },
            })],
            ..Default::default()
        });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.draw(0..3, 0..1);
    }
}
