//! nn.Linear (with SiLU before or after, as the time embedding and each resnet's `time_emb_proj`
//! use it) as 8-lane dot products: the reference's one running sum waits on each add's latency,
//! and its ~11 projections per forward took 2 % of the fast engine's time.

use super::attention::dot;
use super::norm::silu;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// out[n, o] = w[o] · x̂[n] + b[o] with x̂ = silu(x) where `silu_in`, SiLU after where `silu_out`
/// (like `reference::ops::linear`).
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, silu_in: bool, silu_out: bool) -> Result<Tensor> {
    let n = *x.shape.first().ok_or_else(|| Error::Input("linear: input is a scalar".into()))?;
    let (fin, fout) = (x.len() / n.max(1), b.len());
    if w.len() != fout * fin {
        return Err(Error::Input(format!("linear: weight {:?} does not fit input {:?}", w.shape, x.shape)));
    }
    let mut out = vec![0.0; n * fout];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: avx2 and fma were detected on this CPU.
        unsafe { rows_avx2(&x.data, &w.data, &b.data, &mut out, (fin, silu_in, silu_out)) };
        return Tensor::new(vec![n, fout], out);
    }
    rows(&x.data, &w.data, &b.data, &mut out, (fin, silu_in, silu_out));
    Tensor::new(vec![n, fout], out)
}

/// The same loops compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rows_avx2(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], args: (usize, bool, bool)) {
    rows(x, w, b, out, args)
}

#[inline(always)]
fn rows(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], (fin, silu_in, silu_out): (usize, bool, bool)) {
    let mut xin = vec![0.0; fin];
    for (xn, on) in x.chunks_exact(fin).zip(out.chunks_exact_mut(b.len())) {
        for (d, &v) in xin.iter_mut().zip(xn) {
            *d = if silu_in { silu(v) } else { v };
        }
        for (o, (row, &bias)) in on.iter_mut().zip(w.chunks_exact(fin).zip(b)) {
            let s = dot(row, &xin) + bias;
            *o = if silu_out { silu(s) } else { s };
        }
    }
}
