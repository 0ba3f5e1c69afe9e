//! The input gradient of silu(group_norm(z)) (`shaders/group_norm_backward.wgsl`): one workgroup
//! per (item, group), the statistics recomputed from z. The classifier's backward.

use super::dim32;
use crate::error::Result;
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;

kernel_params!(GroupNormBackwardParams for "group_norm_backward" { c: u32, hw: u32, groups: u32, eps: f32 });

pub fn group_norm_silu_backward(
    r: &mut GpuRecorder,
    g: &GpuTensor,
    z: &GpuTensor,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    groups: usize,
    eps: f32,
) -> Result<GpuTensor> {
    crate::classifier::check_group_norm_backward(&g.shape, &z.shape, gamma.len(), beta.len(), groups)?;
    let [n, c, h, w] = z.dims();
    let out = r.alloc(z.shape.clone(), "group_norm input gradient")?;
    let params = GroupNormBackwardParams { c: dim32(c), hw: dim32(h * w), groups: dim32(groups), eps };
    let bindings = [(0, g.buffer()), (1, z.buffer()), (2, gamma.buffer()), (3, beta.buffer()), (4, out.buffer())];
    r.record("group_norm_backward.main", &bindings, &params, 5, crate::gpu::grid(dim32(n * groups)));
    Ok(out)
}
