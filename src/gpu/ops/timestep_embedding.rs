//! diffusers' `get_timestep_embedding` (`shaders/timestep_embedding.wgsl`): sinusoidal features of
//! each item's timestep.

use super::dim32;
use crate::error::Result;
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;

kernel_params!(TimestepEmbeddingParams for "timestep_embedding" { n: u32, dim: u32, flip: u32, shift: f32 });

pub fn timestep_embedding(r: &mut GpuRecorder, t: &GpuTensor, dim: usize, flip: bool, shift: f32) -> Result<GpuTensor> {
    let n = t.len();
    let out = r.alloc(vec![n, dim], "timestep embedding")?;
    let params = TimestepEmbeddingParams { n: dim32(n), dim: dim32(dim), flip: flip as u32, shift };
    r.record(
        "timestep_embedding.main",
        &[(0, t.buffer()), (1, out.buffer())],
        &params,
        2,
        [dim32((n * (dim / 2)).div_ceil(64).max(1)), 1, 1],
    );
    Ok(out)
}

/// `GaussianFourierProjection` (log, no flip) of each item's t with weights `w`: [sin, cos].
pub fn fourier_embedding(r: &mut GpuRecorder, t: &GpuTensor, w: &GpuTensor) -> Result<GpuTensor> {
    let (n, half) = (t.len(), w.len());
    let out = r.alloc(vec![n, 2 * half], "fourier embedding")?;
    let params = TimestepEmbeddingParams { n: dim32(n), dim: dim32(2 * half), flip: 0, shift: 0.0 };
    r.record(
        "timestep_embedding.fourier",
        &[(0, t.buffer()), (1, out.buffer()), (3, w.buffer())],
        &params,
        2,
        [dim32((n * half).div_ceil(64).max(1)), 1, 1],
    );
    Ok(out)
}
