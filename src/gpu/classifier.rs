//! The classifier on the GPU: its forward and input gradient (`classifier::input_gradient`)
//! recorded once per batch shape and replayed at every guided step, like the U-Net. The inputs
//! (x, t, and the per-item (label, scale) target) live in fixed buffers the engine writes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::pool::{GpuTensor, Pool};
use super::recorder::{Dispatch, GpuRecorder};
use super::weights::GpuWeights;
use super::GpuDevice;
use crate::classifier::{input_gradient, Classifier, ClassifierConfig};
use crate::error::Result;
use crate::tensor::Tensor;

pub struct RecordedGradient {
    pub x: GpuTensor,
    pub t: GpuTensor,
    pub target: GpuTensor,
    pub logits: GpuTensor,
    /// scale·∇ₓ log p(y | x, t), [N, C, H, W].
    pub grad: GpuTensor,
    dispatches: Vec<Dispatch>,
    _pool: Rc<RefCell<Pool>>,
}

impl RecordedGradient {
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        super::recorder::encode(&self.dispatches, pass);
    }

    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }

    /// Writes a step's timesteps and (label, scale) pairs.
    pub fn write_inputs(&self, gpu: &GpuDevice, t: &[f32], target: &[f32]) {
        gpu.queue.write_buffer(self.t.buffer(), 0, bytemuck::cast_slice(t));
        gpu.queue.write_buffer(self.target.buffer(), 0, bytemuck::cast_slice(target));
    }
}

/// A classifier's weights on the GPU and its recordings by (batch, h, w).
pub struct GpuClassifier {
    pub config: ClassifierConfig,
    weights: GpuWeights,
    recordings: HashMap<(usize, usize, usize), Rc<RecordedGradient>>,
}

impl GpuClassifier {
    pub fn new(gpu: &GpuDevice, classifier: &Classifier) -> Result<Self> {
        let weights = GpuWeights::upload_tensors(gpu, &classifier.tensors)?;
        gpu.check()?;
        Ok(GpuClassifier { config: classifier.config.clone(), weights, recordings: HashMap::new() })
    }

    pub async fn recording(&mut self, gpu: &GpuDevice, batch: usize, h: usize, w: usize) -> Result<Rc<RecordedGradient>> {
        if let Some(r) = self.recordings.get(&(batch, h, w)) {
            return Ok(r.clone());
        }
        let c = self.config.in_channels;
        let x = GpuTensor::owned(gpu.storage_buffer((batch * c * h * w * 4) as u64, "classifier input")?, vec![batch, c, h, w]);
        let t = GpuTensor::owned(gpu.storage_buffer((batch * 4) as u64, "classifier timesteps")?, vec![batch]);
        let target = GpuTensor::owned(gpu.storage_buffer((batch * 8) as u64, "classifier targets")?, vec![batch, 2]);
        let pool: Rc<RefCell<Pool>> = Rc::default();
        let (logits, grad, dispatches) = gpu
            .validated("recording the classifier's gradient", || {
                let mut r = GpuRecorder::new(gpu, &self.weights, pool.clone())?;
                let out = input_gradient(&mut r, &self.config, &x, &t, &target)?;
                Ok((out.logits, out.grad, std::mem::take(&mut r.dispatches)))
            })
            .await?;
        let rec = Rc::new(RecordedGradient { x, t, target, logits, grad, dispatches, _pool: pool });
        self.recordings.insert((batch, h, w), rec.clone());
        Ok(rec)
    }

    /// One pass with a readback (tests): the logits and scale·∇ₓ log p(y | x, t) for `target`
    /// [N, 2] = (label, scale) per item.
    pub async fn gradient(&mut self, gpu: &GpuDevice, x: &Tensor, t: &[f32], target: &[f32]) -> Result<(Tensor, Tensor)> {
        let [n, _, h, w] = crate::reference::dims(x);
        let rec = self.recording(gpu, n, h, w).await?;
        gpu.queue.write_buffer(rec.x.buffer(), 0, bytemuck::cast_slice(&x.data));
        rec.write_inputs(gpu, t, target);
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            rec.encode(&mut pass);
        }
        gpu.queue.submit([enc.finish()]);
        let logits = Tensor::new(rec.logits.shape.clone(), gpu.read(rec.logits.buffer(), rec.logits.len()).await?)?;
        let grad = Tensor::new(rec.grad.shape.clone(), gpu.read(rec.grad.buffer(), rec.grad.len()).await?)?;
        Ok((logits, grad))
    }
}
