//! Scaled dot-product attention per head (`shaders/attention.wgsl`): scores = qᵀk/√d, a softmax
//! over keys, then the scores applied to v; q, k, v are [N, heads·d, L] laid out as NCHW.

use super::{dim32, groups_1d};
use crate::error::{Error, Result};
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;

kernel_params!(AttentionParams for "attention" { n: u32, heads: u32, d: u32, l: u32, scale: f32, _p0: u32, _p1: u32, _p2: u32 });

pub fn attention(r: &mut GpuRecorder, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, heads: usize, d: usize) -> Result<GpuTensor> {
    let [n, inner, h, w] = q.dims();
    if inner != heads * d || k.shape != q.shape || v.shape != q.shape {
        return Err(Error::Input(format!("attention: q {:?} k {:?} v {:?} for {heads} heads of {d}", q.shape, k.shape, v.shape)));
    }
    let l = h * w;
    let params = AttentionParams {
        n: dim32(n),
        heads: dim32(heads),
        d: dim32(d),
        l: dim32(l),
        scale: 1.0 / (d as f32).sqrt(),
        ..Default::default()
    };
    let scores = r.alloc(vec![n * heads, l, l], "attention scores")?;
    r.record("attention.scores", &[(0, q.buffer()), (1, k.buffer()), (2, scores.buffer())], &params, 3, groups_1d(n * heads * l * l, 64));
    r.record("attention.softmax", &[(2, scores.buffer())], &params, 3, groups_1d(n * heads * l, 64));
    let out = r.alloc(q.shape.clone(), "attention output")?;
    r.record("attention.apply", &[(0, scores.buffer()), (1, v.buffer()), (2, out.buffer())], &params, 3, groups_1d(n * heads * d * l, 64));
    Ok(out)
}
