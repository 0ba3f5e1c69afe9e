//! The classifier's ops that the U-Net has no use for: average pooling, and the input gradients
//! (backward passes) of pooling, silu(group_norm(·)) and log-softmax, in plain Rust — the oracle of
//! their WGSL kernels (tests/op_cases) and what both CPU engines run. A conv's or a linear layer's
//! input gradient is itself a conv or a linear layer (`classifier::input_grad_weights`).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

fn nchw(t: &Tensor, what: &str) -> Result<[usize; 4]> {
    match t.shape[..] {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(Error::Input(format!("{what}: expected [N, C, H, W], got {:?}", t.shape))),
    }
}

/// `F.avg_pool2d(x, k, stride=k)`: the mean of each k₀×k₁ window; trailing rows and columns that
/// fill no window are dropped (floor), as torch does.
pub fn avg_pool2d(x: &Tensor, k: [usize; 2]) -> Result<Tensor> {
    let [n, c, h, w] = nchw(x, "avg_pool2d")?;
    let (oh, ow) = pooled(h, w, k)?;
    let scale = 1.0 / (k[0] * k[1]) as f32;
    let mut out = vec![0.0; n * c * oh * ow];
    for (plane, o) in x.data.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
        for i in 0..oh {
            for j in 0..ow {
                let mut s = 0.0;
                for y in i * k[0]..(i + 1) * k[0] {
                    s += plane[y * w + j * k[1]..y * w + (j + 1) * k[1]].iter().sum::<f32>();
                }
                o[i * ow + j] = s * scale;
            }
        }
    }
    Tensor::new(vec![n, c, oh, ow], out)
}

fn pooled(h: usize, w: usize, k: [usize; 2]) -> Result<(usize, usize)> {
    if k[0] == 0 || k[1] == 0 || k[0] > h || k[1] > w {
        return Err(Error::Input(format!("avg_pool2d: a {}×{} window does not fit a {h}×{w} input", k[0], k[1])));
    }
    Ok((h / k[0], w / k[1]))
}

/// The input gradient of `avg_pool2d`: `g` (any shape of N·C·⌊H/k₀⌋·⌊W/k₁⌋ values) spread evenly
/// over each window of an input of `shape` [N, C, H, W]; the dropped rows and columns get 0.
pub fn avg_pool2d_backward(g: &Tensor, k: [usize; 2], shape: [usize; 4]) -> Result<Tensor> {
    let [n, c, h, w] = shape;
    let (oh, ow) = pooled(h, w, k)?;
    if g.len() != n * c * oh * ow {
        return Err(Error::Input(format!("avg_pool2d_backward: {} gradient values for a {oh}×{ow} output of {n}×{c}", g.len())));
    }
    let scale = 1.0 / (k[0] * k[1]) as f32;
    let mut out = vec![0.0; n * c * h * w];
    for (gp, plane) in g.data.chunks_exact(oh * ow).zip(out.chunks_exact_mut(h * w)) {
        for y in 0..oh * k[0] {
            for x in 0..ow * k[1] {
                plane[y * w + x] = gp[(y / k[0]) * ow + x / k[1]] * scale;
            }
        }
    }
    Tensor::new(shape.to_vec(), out)
}

/// The input gradient of s = silu(group_norm(z)): dL/dz from g = dL/ds, the group statistics
/// recomputed from z (biased variance, as torch). With x̂ = (z − μ)·r, r = 1/√(σ² + ε),
/// a = γx̂ + β and u = g·silu'(a)·γ: dL/dz = r·(u − mean(u) − x̂·mean(u·x̂)) over the group.
pub fn group_norm_silu_backward(g: &Tensor, z: &Tensor, gamma: &Tensor, beta: &Tensor, groups: usize, eps: f32) -> Result<Tensor> {
    crate::classifier::check_group_norm_backward(&g.shape, &z.shape, gamma.len(), beta.len(), groups)?;
    let [_, c, h, w] = nchw(z, "group_norm_silu_backward")?;
    let per = c / groups * h * w;
    let mut out = vec![0.0; z.len()];
    for (chunk, ((zg, gg), og)) in z.data.chunks_exact(per).zip(g.data.chunks_exact(per)).zip(out.chunks_exact_mut(per)).enumerate() {
        let c0 = (chunk % groups) * (c / groups);
        let mean = zg.iter().map(|&v| v as f64).sum::<f64>() / per as f64;
        let var = zg.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / per as f64;
        let r = 1.0 / (var + eps as f64).sqrt();
        let xhat = |i: usize| (zg[i] as f64 - mean) * r;
        let u = |i: usize| {
            let ch = c0 + i / (h * w);
            let a = gamma.data[ch] as f64 * xhat(i) + beta.data[ch] as f64;
            let s = 1.0 / (1.0 + (-a).exp());
            gg[i] as f64 * s * (1.0 + a * (1.0 - s)) * gamma.data[ch] as f64
        };
        let (mut su, mut sux) = (0.0, 0.0);
        for i in 0..per {
            su += u(i);
            sux += u(i) * xhat(i);
        }
        let (mu, mux) = (su / per as f64, sux / per as f64);
        for (i, o) in og.iter_mut().enumerate() {
            *o = (r * (u(i) - mu - xhat(i) * mux)) as f32;
        }
    }
    Tensor::new(z.shape.clone(), out)
}

/// The gradient of scale_n · log softmax(logits_n)[y_n] with respect to the logits [N, K]:
/// scale_n · (onehot(y_n) − softmax(logits_n)). `target` [N, 2] holds (y_n, scale_n) per item,
/// the label as a float (the GPU writes it with the scale, every step).
pub fn log_softmax_backward(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let n = target.len() / 2;
    if n == 0 || target.len() != 2 * n || !logits.len().is_multiple_of(n) {
        return Err(Error::Input(format!("log_softmax_backward: {} logits for {} targets", logits.len(), target.len() / 2)));
    }
    let k = logits.len() / n;
    let mut out = vec![0.0; logits.len()];
    for (i, (row, o)) in logits.data.chunks_exact(k).zip(out.chunks_exact_mut(k)).enumerate() {
        let (y, scale) = (target.data[2 * i], target.data[2 * i + 1]);
        if !(y >= 0.0 && (y as usize) < k && y.fract() == 0.0) {
            return Err(Error::Input(format!("log_softmax_backward: label {y} of item {i} is not one of the {k} classes")));
        }
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
        for (j, (o, &v)) in o.iter_mut().zip(row).enumerate() {
            let onehot = if j == y as usize { 1.0 } else { 0.0 };
            *o = scale * (onehot - (v - max).exp() / sum);
        }
    }
    Tensor::new(vec![n, k], out)
}
