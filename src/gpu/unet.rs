//! A U-Net forward recorded once per input shape and replayed every step: the inputs (sample,
//! timesteps, labels) live in fixed buffers, so a step is one write_buffer + the same dispatches.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::pool::{GpuTensor, Pool};
use super::recorder::{Dispatch, GpuRecorder};
use super::weights::GpuWeights;
use super::GpuDevice;
use crate::error::Result;
use crate::model::{unet_forward, Model, UNetConfig};
use crate::tensor::Tensor;

pub struct RecordedForward {
    pub batch: usize,
    pub sample: GpuTensor,
    pub timesteps: GpuTensor,
    pub labels: Option<GpuTensor>,
    pub out: GpuTensor,
    /// Labels go through `time_proj` (class_embed_type "timestep"), so the kernels read them as
    /// f32 values; a class table reads u32 indices.
    labels_as_values: bool,
    dispatches: Vec<Dispatch>,
}

impl RecordedForward {
    /// Records the forward for `batch` samples of `h`×`w`; any validation error of the recording
    /// (a bind group that does not fit its pipeline, a binding over the adapter's limits) is returned.
    pub async fn record(
        gpu: &GpuDevice,
        weights: &GpuWeights,
        pool: Rc<RefCell<Pool>>,
        cfg: &UNetConfig,
        batch: usize,
        h: usize,
        w: usize,
    ) -> Result<Self> {
        cfg.check_input_size(h, w)?;
        let sample = GpuTensor::owned(
            gpu.storage_buffer((batch * cfg.in_channels * h * w * 4) as u64, "sample")?,
            vec![batch, cfg.in_channels, h, w],
        );
        let timesteps = GpuTensor::owned(gpu.storage_buffer((batch * 4) as u64, "timesteps")?, vec![batch]);
        let labels = match cfg.num_class_embeds {
            Some(_) => Some(GpuTensor::owned(gpu.storage_buffer((batch * 4) as u64, "class labels")?, vec![batch])),
            None => None,
        };
        // Recorded twice: a trace of the activations' sizes and lifetimes (thrown away), then the
        // forward over buffers planned from it (`Pool::plan`).
        pool.borrow_mut().trace();
        let record = |pool: Rc<RefCell<Pool>>| -> Result<(GpuTensor, Vec<Dispatch>)> {
            let mut recorder = GpuRecorder::new(gpu, weights, pool)?;
            let out = unet_forward(&mut recorder, cfg, &sample, &timesteps, labels.as_ref())?;
            Ok((out, std::mem::take(&mut recorder.dispatches)))
        };
        let traced = gpu.validated("tracing the U-Net forward", || record(pool.clone())).await;
        let plan = pool.borrow_mut().plan(gpu)?; // while the traced output is alive: it is the output
        if let Err(e) = traced {
            let _ = pool.borrow_mut().finish(plan);
            return Err(e);
        }
        drop(traced);
        let recorded = gpu.validated("recording the U-Net forward", || record(pool.clone())).await;
        let finished = pool.borrow_mut().finish(plan);
        let (out, dispatches) = recorded?;
        finished?;
        let labels_as_values = cfg.class_embedding == Some(crate::model::config::ClassEmbedding::Timestep);
        Ok(RecordedForward { batch, sample, timesteps, labels, out, labels_as_values, dispatches })
    }

    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }

    /// The recorded dispatches, in order (profiling).
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    /// Appends the whole forward to a compute pass.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        super::recorder::encode(&self.dispatches, pass);
    }

    /// Writes the per-step inputs (timesteps, labels) into their buffers.
    pub fn write_conditioning(&self, gpu: &GpuDevice, timesteps: &[f32], labels: Option<&[u32]>) {
        gpu.queue.write_buffer(self.timesteps.buffer(), 0, bytemuck::cast_slice(timesteps));
        if let (Some(buf), Some(l)) = (&self.labels, labels) {
            match self.labels_as_values {
                true => {
                    let values: Vec<f32> = l.iter().map(|&v| v as f32).collect();
                    gpu.queue.write_buffer(buf.buffer(), 0, bytemuck::cast_slice(&values));
                }
                false => gpu.queue.write_buffer(buf.buffer(), 0, bytemuck::cast_slice(l)),
            }
        }
    }
}

/// A model on the GPU: the device, the uploaded weights, and one recorded forward per input shape.
pub struct GpuUNet {
    pub gpu: GpuDevice,
    pub config: UNetConfig,
    pub weights: GpuWeights,
    pool: Rc<RefCell<Pool>>,
    recordings: HashMap<(usize, usize, usize), Rc<RecordedForward>>,
}

impl GpuUNet {
    pub fn new(gpu: GpuDevice, model: &Model) -> Result<Self> {
        let weights = GpuWeights::upload(&gpu, model)?;
        gpu.check()?;
        Ok(GpuUNet { gpu, config: model.config.clone(), weights, pool: Rc::default(), recordings: HashMap::new() })
    }

    /// The recorded forward for this shape, recorded on first use.
    pub async fn recording(&mut self, batch: usize, h: usize, w: usize) -> Result<Rc<RecordedForward>> {
        if let Some(p) = self.recordings.get(&(batch, h, w)) {
            return Ok(p.clone());
        }
        let p = Rc::new(RecordedForward::record(&self.gpu, &self.weights, self.pool.clone(), &self.config, batch, h, w).await?);
        self.recordings.insert((batch, h, w), p.clone());
        Ok(p)
    }

    /// Bytes of activation buffers the pool holds.
    pub fn activation_bytes(&self) -> u64 {
        self.pool.borrow().allocated
    }

    /// One forward with a readback (tests, `ddim forward`): `sample` [N,C,H,W], one timestep and
    /// (class-conditional models) one label per item.
    pub async fn forward(&mut self, sample: &Tensor, timesteps: &[f32], labels: Option<&[u32]>) -> Result<Tensor> {
        let n = crate::model::unet::check_sample(&self.config, &sample.shape, timesteps, labels)?;
        let prog = self.recording(n, sample.shape[2], sample.shape[3]).await?;
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
