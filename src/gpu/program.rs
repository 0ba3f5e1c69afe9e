//! A U-Net forward recorded once per input shape and replayed every step: the inputs (sample,
//! timesteps, labels) live in fixed buffers, so a step is one write_buffer + the same dispatches.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::backend::{Dispatch, GpuBackend, GpuTensor, GpuWeights, Pool};
use super::Gpu;
use crate::error::Result;
use crate::model::{unet_forward, Model, UNetConfig};
use crate::tensor::Tensor;

pub struct UNetProgram {
    pub batch: usize,
    pub sample: GpuTensor,
    pub timesteps: GpuTensor,
    pub labels: Option<GpuTensor>,
    pub out: GpuTensor,
    dispatches: Vec<Dispatch>,
}

impl UNetProgram {
    /// Records the forward for `batch` samples of `h`×`w`.
    pub fn record(gpu: &Gpu, weights: &GpuWeights, pool: Rc<RefCell<Pool>>, cfg: &UNetConfig, batch: usize, h: usize, w: usize) -> Result<Self> {
        cfg.check_input_size(h, w)?;
        let sample = GpuTensor::owned(gpu.storage_buffer((batch * cfg.in_channels * h * w * 4) as u64, "sample")?,
                                      vec![batch, cfg.in_channels, h, w]);
        let timesteps = GpuTensor::owned(gpu.storage_buffer((batch * 4) as u64, "timesteps")?, vec![batch]);
        let labels = match cfg.num_class_embeds {
            Some(_) => Some(GpuTensor::owned(gpu.storage_buffer((batch * 4) as u64, "class labels")?, vec![batch])),
            None => None,
        };
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut backend = GpuBackend::new(gpu, weights, pool)?;
        let out = unet_forward(&mut backend, cfg, &sample, &timesteps, labels.as_ref())?;
        let dispatches = std::mem::take(&mut backend.dispatches);
        drop(scope); // errors, if any, surface through the device's uncaptured-error slot
        gpu.check()?;
        Ok(UNetProgram { batch, sample, timesteps, labels, out, dispatches })
    }

    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }

    /// Appends the whole forward to a compute pass.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        super::backend::encode(&self.dispatches, pass);
    }

    /// Writes the per-step inputs (timesteps, labels) into their buffers.
    pub fn write_conditioning(&self, gpu: &Gpu, timesteps: &[f32], labels: Option<&[u32]>) {
        gpu.queue.write_buffer(self.timesteps.buffer(), 0, bytemuck::cast_slice(timesteps));
        if let (Some(buf), Some(l)) = (&self.labels, labels) {
            gpu.queue.write_buffer(buf.buffer(), 0, bytemuck::cast_slice(l));
        }
    }
}

/// The GPU engine: device, uploaded weights, and one recorded program per input shape.
pub struct GpuEngine {
    pub gpu: Gpu,
    pub config: UNetConfig,
    pub weights: GpuWeights,
    pool: Rc<RefCell<Pool>>,
    programs: HashMap<(usize, usize, usize), Rc<UNetProgram>>,
}

impl GpuEngine {
    pub fn new(gpu: Gpu, model: &Model) -> Result<Self> {
        let weights = GpuWeights::upload(&gpu, model)?;
        gpu.check()?;
        Ok(GpuEngine { gpu, config: model.config.clone(), weights, pool: Rc::default(), programs: HashMap::new() })
    }

    /// The program for this shape, recorded on first use.
    pub fn program(&mut self, batch: usize, h: usize, w: usize) -> Result<Rc<UNetProgram>> {
        if let Some(p) = self.programs.get(&(batch, h, w)) {
            return Ok(p.clone());
        }
        let p = Rc::new(UNetProgram::record(&self.gpu, &self.weights, self.pool.clone(), &self.config, batch, h, w)?);
        self.programs.insert((batch, h, w), p.clone());
        Ok(p)
    }

    /// Bytes of activation buffers the pool holds.
    pub fn activation_bytes(&self) -> u64 {
        self.pool.borrow().allocated
    }

    /// One forward with a readback (tests, `ddim forward`): `sample` [N,C,H,W], one timestep and
    /// (class-conditional models) one label per item.
    pub async fn forward(&mut self, sample: &Tensor, timesteps: &[f32], labels: Option<&[u32]>) -> Result<Tensor> {
        let n = crate::model::unet::check_sample(&self.config, &sample.shape, timesteps.len(), labels)?;
        let prog = self.program(n, sample.shape[2], sample.shape[3])?;
        self.gpu.queue.write_buffer(prog.sample.buffer(), 0, bytemuck::cast_slice(&sample.data));
        prog.write_conditioning(&self.gpu, timesteps, labels);
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            prog.encode(&mut pass);
        }
        self.gpu.queue.submit([enc.finish()]);
        let data = self.gpu.read(prog.out.buffer(), prog.out.len()).await?;
        Tensor::new(prog.out.shape.clone(), data)
    }
}
