//! x · scale + shift, elementwise (`shaders/affine.wgsl`): `center_input_sample`, and the
//! engine's input scaling.

use super::{dim32, groups_1d};
use crate::error::Result;
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;

kernel_params!(AffineParams for "affine" { count: u32, scale: f32, shift: f32, _p: u32 });

pub fn affine(r: &mut GpuRecorder, x: &GpuTensor, scale: f32, shift: f32) -> Result<GpuTensor> {
    let out = r.alloc(x.shape.clone(), "affine output")?;
    let params = AffineParams { count: dim32(x.len()), scale, shift, _p: 0 };
    r.record("affine.main", &[(0, x.buffer()), (1, out.buffer())], &params, 2, groups_1d(x.len(), 64));
    Ok(out)
}
