//! Group norm (+SiLU) in two passes over each group: statistics with 8 independent lanes (so the
//! compiler vectorises the sums; the lanes are combined in f64), then normalise, scale, shift and
//! SiLU in one pass.

use crate::cpu::ops::silu;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

const LANES: usize = 8;

fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += f(c[l]);
        }
    }
    acc.iter().map(|&a| a as f64).sum::<f64>() + rest.iter().map(|&x| f(x) as f64).sum::<f64>()
}

pub fn group_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, groups: usize, eps: f32, silu_after: bool) -> Result<Tensor> {
    let &[_, c, h, w] = &x.shape[..] else {
        return Err(Error::Input(format!("group_norm: expected [N, C, H, W], got {:?}", x.shape)));
    };
    if groups == 0 || !c.is_multiple_of(groups) || gamma.len() != c || beta.len() != c {
        return Err(Error::Input(format!("group_norm: {c} channels, {groups} groups, gamma {:?}", gamma.shape)));
    }
    let (cg, hw) = (c / groups, h * w);
    let span = cg * hw;
    let mut out = vec![0.0f32; x.len()];
    for (gi, (src, dst)) in x.data.chunks_exact(span).zip(out.chunks_exact_mut(span)).enumerate() {
        let mean = lane_sum(src, |v| v) / span as f64;
        let m = mean as f32;
        let var = lane_sum(src, |v| (v - m) * (v - m)) / span as f64;
        let inv = (1.0 / (var + eps as f64).sqrt()) as f32;
        let first = (gi % groups) * cg;
        for (j, (s, d)) in src.chunks_exact(hw).zip(dst.chunks_exact_mut(hw)).enumerate() {
            let (scale, shift) = (inv * gamma.data[first + j], beta.data[first + j] - m * inv * gamma.data[first + j]);
            if silu_after {
                s.iter().zip(d.iter_mut()).for_each(|(&v, o)| *o = silu(v * scale + shift));
            } else {
                s.iter().zip(d.iter_mut()).for_each(|(&v, o)| *o = v * scale + shift);
            }
        }
    }
    Tensor::new(x.shape.clone(), out)
}
