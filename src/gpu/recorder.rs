//! `GpuRecorder`: records WGSL dispatches. Calling an op (`ops/`) does not run it: it allocates
//! the output from the pool, builds the bind group and appends a `Dispatch`; `encode` replays the
//! list. A tensor's buffer is free for later ops of the same recording once its last handle drops —
//! safe because dispatches run in recording order. A recorded forward is planned (`Pool::plan`):
//! traced once for every activation's size and lifetime, then recorded over shared buffers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::params::KernelParams;
use super::pool::{self, tensor_bytes, GpuTensor, Pool};
use super::weights::GpuWeights;
use super::GpuDevice;
use crate::error::Result;

/// One recorded kernel launch.
pub struct Dispatch {
    /// "file.entry" of the kernel (profiles group by it).
    pub kernel: String,
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
    /// Floating-point operations the dispatch does, where its op counts them (the conv GEMMs:
    /// 2 per multiply-add, padding to whole tiles included); 0 elsewhere.
    pub flops: f64,
}

pub struct GpuRecorder<'a> {
    pub gpu: &'a GpuDevice,
    pub(super) weights: &'a GpuWeights,
    pool: Rc<RefCell<Pool>>,
    pub dispatches: Vec<Dispatch>,
    dummy: wgpu::Buffer,
}

impl<'a> GpuRecorder<'a> {
    pub fn new(gpu: &'a GpuDevice, weights: &'a GpuWeights, pool: Rc<RefCell<Pool>>) -> Result<Self> {
        let dummy = gpu.storage_buffer(16, "unused binding")?;
        Ok(GpuRecorder { gpu, weights, pool, dispatches: Vec::new(), dummy })
    }

    /// An activation tensor from the pool.
    pub fn alloc(&mut self, shape: Vec<usize>, what: &str) -> Result<GpuTensor> {
        let bytes = tensor_bytes(&shape);
        pool::request(&self.pool, self.gpu, shape, bytes, what)
    }

    /// A transient buffer (im2col patches) of at least the shape's size, rounded up to a power of
    /// two: the pool reuses buffers by exact size, so the many patch sizes of a U-Net share a few.
    pub(super) fn alloc_scratch(&mut self, shape: Vec<usize>, what: &str) -> Result<GpuTensor> {
        let bytes = tensor_bytes(&shape);
        let rounded = bytes.checked_next_power_of_two().unwrap_or(bytes).min(self.gpu.max_buffer_bytes().max(bytes));
        pool::request(&self.pool, self.gpu, shape, rounded, what)
    }

    /// A buffer bound where a kernel's optional input is absent.
    pub(super) fn unused(&self) -> wgpu::Buffer {
        self.dummy.clone()
    }

    /// Records `kernel` ("file.entry") with buffers at their bindings and `params` at the last binding.
    pub fn record<P: KernelParams>(
        &mut self,
        kernel: &str,
        buffers: &[(u32, &wgpu::Buffer)],
        params: &P,
        params_binding: u32,
        groups: [u32; 3],
    ) {
        debug_assert!(kernel.starts_with(P::SHADER), "{kernel} recorded with the params of {}", P::SHADER);
        let uniform = self.gpu.params(params);
        let mut entries = buffers.to_vec();
        entries.push((params_binding, &uniform));
        let bind_group = self.gpu.bind(kernel, &entries);
        let pipeline = self.gpu.pipeline(kernel).clone();
        self.dispatches.push(Dispatch { kernel: kernel.to_string(), pipeline, bind_group, groups, flops: 0.0 });
    }

    /// Notes the floating-point operations of the dispatch just recorded (`Dispatch::flops`).
    pub(super) fn count_flops(&mut self, flops: f64) {
        if let Some(d) = self.dispatches.last_mut() {
            d.flops = flops;
        }
    }
}

/// Appends recorded dispatches to a compute pass, in order.
pub fn encode(dispatches: &[Dispatch], pass: &mut wgpu::ComputePass<'_>) {
    for d in dispatches {
        pass.set_pipeline(&d.pipeline);
        pass.set_bind_group(0, &d.bind_group, &[]);
        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
    }
}

/// Runs one op (or a few) on the GPU right away and reads the result back: the op tests' harness.
pub async fn run_now(
    gpu: &GpuDevice,
    weights: &HashMap<String, crate::Tensor>,
    inputs: &[&crate::Tensor],
    op: impl FnOnce(&mut GpuRecorder, &[GpuTensor]) -> Result<GpuTensor>,
) -> Result<crate::Tensor> {
    let w = GpuWeights::upload_tensors(gpu, weights)?;
    let ins = inputs.iter().map(|t| Ok(GpuTensor::owned(gpu.upload(&t.data, "input")?, t.shape.clone()))).collect::<Result<Vec<_>>>()?;
    let mut b = GpuRecorder::new(gpu, &w, Rc::default())?;
    let out = op(&mut b, &ins)?;
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        encode(&b.dispatches, &mut pass);
    }
    gpu.queue.submit([enc.finish()]);
    let data = gpu.read(out.buffer(), out.len()).await?;
    crate::Tensor::new(out.shape.clone(), data)
}
