//! Attention (scores, softmax, weighted sum) with contiguous inner loops: the reference walks q·k
//! over channels with a stride of L; here each query's score row is accumulated channel by channel
//! over contiguous key rows, and the output is 8-lane dot products over contiguous value rows, so
//! both vectorise. Exp is the vectorisable one of `norm`.

use super::norm::exp;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

const LANES: usize = 8;

/// a · b over `LANES` independent lanes (so it vectorises).
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Per head h: out[:, h] = softmax(q_hᵀ k_h / √d) v_h, on [N, heads·d, H, W] (like `cpu::ops::attention`).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, d: usize) -> Result<Tensor> {
    let &[n, inner, h, w] = &q.shape[..] else {
        return Err(Error::Input(format!("attention: q must be [N, C, H, W], got {:?}", q.shape)));
    };
    if inner != heads * d || k.shape != q.shape || v.shape != q.shape {
        return Err(Error::Input(format!("attention: q {:?} k {:?} v {:?} for {heads} heads of {d}", q.shape, k.shape, v.shape)));
    }
    let mut out = vec![0.0f32; q.len()];
    let args = (n * heads, d, h * w);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: avx2 and fma were detected on this CPU.
        unsafe { heads_avx2(&q.data, &k.data, &v.data, &mut out, args) };
        return Tensor::new(q.shape.clone(), out);
    }
    all_heads(&q.data, &k.data, &v.data, &mut out, args);
    Tensor::new(q.shape.clone(), out)
}

/// The same loops compiled for AVX2 (twice the lanes of the x86-64 baseline's SSE2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn heads_avx2(q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], args: (usize, usize, usize)) {
    all_heads(q, k, v, out, args)
}

/// Every head of q, k, v ([N·heads, d, L] each) into `out`.
#[inline(always)]
fn all_heads(q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], (heads, d, l): (usize, usize, usize)) {
    let scale = 1.0 / (d as f32).sqrt();
    let mut s = vec![0.0f32; l];
    for head in 0..heads {
        let base = head * d * l;
        let (qh, kh, vh) = (&q[base..][..d * l], &k[base..][..d * l], &v[base..][..d * l]);
        let oh = &mut out[base..][..d * l];
        for i in 0..l {
            s.fill(0.0);
            for c in 0..d {
                let qv = qh[c * l + i];
                s.iter_mut().zip(&kh[c * l..][..l]).for_each(|(sj, &kj)| *sj += qv * kj);
            }
            let m = s.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) * scale;
            s.iter_mut().for_each(|x| *x = exp(*x * scale - m));
            let inv = 1.0 / s.iter().sum::<f32>();
            for c in 0..d {
                oh[c * l + i] = dot(&s, &vh[c * l..][..l]) * inv;
            }
        }
    }
}
