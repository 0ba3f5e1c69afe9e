//! GroupNorm (`shaders/group_norm.wgsl`): per (item, group) partial sums over chunks (`stats`),
//! merged into (mean, 1/√(var + ε)) (`combine`), then applied with γ, β and an optional SiLU
//! (`apply`). conv2d applies the moments itself where a norm feeds a conv (`norm_silu_conv2d`).

use super::{dim32, groups_1d};
use crate::error::{Error, Result};
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;

kernel_params!(GroupNormParams for "group_norm" { n: u32, c: u32, hw: u32, groups: u32, eps: f32, silu: u32, chunks: u32, _p: u32 });

/// Elements per partial sum of group_norm.wgsl (its `CHUNK`).
const GROUP_NORM_CHUNK: usize = 1024;

fn group_norm_params(x: &GpuTensor, groups: usize, eps: f32, silu: bool) -> GroupNormParams {
    let [n, c, h, w] = x.dims();
    GroupNormParams {
        n: dim32(n),
        c: dim32(c),
        hw: dim32(h * w),
        groups: dim32(groups),
        eps,
        silu: silu as u32,
        chunks: dim32((c / groups.max(1) * h * w).div_ceil(GROUP_NORM_CHUNK)),
        _p: 0,
    }
}

/// Per (n, group): (mean, 1/√(var + ε)) of x (group_norm.wgsl's `stats` and `combine`).
pub fn group_moments(r: &mut GpuRecorder, x: &GpuTensor, groups: usize, eps: f32) -> Result<GpuTensor> {
    let [n, c, ..] = x.dims();
    if groups == 0 || c % groups != 0 {
        return Err(Error::Input(format!("group_norm: {c} channels are not divisible into {groups} groups")));
    }
    let params = group_norm_params(x, groups, eps, false);
    let chunks = params.chunks as usize;
    let partial = r.alloc(vec![n * groups * chunks, 2], "group_norm partial sums")?;
    let moments = r.alloc(vec![n * groups, 2], "group_norm moments")?;
    r.record("group_norm.stats", &[(0, x.buffer()), (5, partial.buffer())], &params, 4, groups_1d(n * groups * chunks, 64));
    r.record("group_norm.combine", &[(5, partial.buffer()), (6, moments.buffer())], &params, 4, groups_1d(n * groups, 64));
    Ok(moments)
}

pub fn group_norm(
    r: &mut GpuRecorder,
    x: &GpuTensor,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    groups: usize,
    eps: f32,
    silu: bool,
) -> Result<GpuTensor> {
    let moments = group_moments(r, x, groups, eps)?;
    let out = r.alloc(x.shape.clone(), "group_norm output")?;
    let params = group_norm_params(x, groups, eps, silu);
    r.record(
        "group_norm.apply",
        &[(0, x.buffer()), (1, gamma.buffer()), (2, beta.buffer()), (3, out.buffer()), (6, moments.buffer())],
        &params,
        4,
        groups_1d(x.len(), 64),
    );
    Ok(out)
}
