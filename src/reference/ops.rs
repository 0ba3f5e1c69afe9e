//! Reference implementations of every op, in plain Rust, f32 storage with f32 accumulation in the
//! inner loops (as the kernels do) and f64 for the normalisation statistics.

use crate::error::{Error, Result};
use crate::model::config::Activation;
use crate::model::ConvArgs;
use crate::tensor::Tensor;

fn dims4(t: &Tensor, what: &str) -> Result<[usize; 4]> {
    match t.shape[..] {
        [n, c, h, w] => Ok([n, c, h, w]),
        [n, c] => Ok([n, c, 1, 1]),
        _ => Err(Error::Input(format!("{what}: expected a 4-D tensor, got shape {:?}", t.shape))),
    }
}

pub fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

/// out[n,o] = (Σ_{i,ky,kx} w[o,i,ky,kx]·x[n,i,iy,ix] + b[o] + chan_add[n,o] + residual[n,o]) / out_scale,
/// with iy = oy·stride + ky − pad_top read from the (optionally 2× nearest-upsampled) input.
pub fn conv2d(x: &Tensor, conv: ConvArgs<'_, Tensor>) -> Result<Tensor> {
    let ConvArgs { weight: w, bias: b, spec, chan_add, residual, out_scale } = conv;
    let [n, ci, h, wd] = dims4(x, "conv2d input")?;
    let [co, wci, k, k2] = dims4(w, "conv2d weight")?;
    if wci != ci || k != k2 || b.len() != co {
        return Err(Error::Input(format!("conv2d: weight {:?} / bias {:?} do not fit input {:?}", w.shape, b.shape, x.shape)));
    }
    let (oh, ow) = spec.out_size(h, wd, k).ok_or_else(|| Error::Input(format!("conv2d: input {h}x{wd} too small")))?;
    if let Some(a) = chan_add {
        if a.len() != n * co {
            return Err(Error::Input(format!("conv2d: channel add {:?} does not fit [{n}, {co}]", a.shape)));
        }
    }
    if let Some(r) = residual {
        if r.len() != n * co * oh * ow {
            return Err(Error::Input(format!("conv2d: residual {:?} does not match the output [{n}, {co}, {oh}, {ow}]", r.shape)));
        }
    }
    let up = if spec.upsample { 2 } else { 1 };
    let (eh, ew) = (h * up, wd * up);
    let mut out = vec![0.0f32; n * co * oh * ow];
    for ni in 0..n {
        for o in 0..co {
            let plane = &mut out[(ni * co + o) * oh * ow..][..oh * ow];
            let add = b.data[o] + chan_add.map_or(0.0, |t| t.data[ni * co + o]);
            plane.iter_mut().for_each(|v| *v = add);
            for i in 0..ci {
                let src = &x.data[(ni * ci + i) * h * wd..][..h * wd];
                for ky in 0..k {
                    for kx in 0..k {
                        let wv = w.data[((o * ci + i) * k + ky) * k + kx];
                        for oy in 0..oh {
                            let iy = (oy * spec.stride + ky) as isize - spec.pad[0] as isize;
                            if iy < 0 || iy >= eh as isize {
                                continue;
                            }
                            let row = &src[(iy as usize / up) * wd..][..wd];
                            let dst = &mut plane[oy * ow..][..ow];
                            if spec.stride == 1 && up == 1 {
                                // Contiguous inner loop: the compiler vectorises it.
                                let lo = spec.pad[1].saturating_sub(kx);
                                let hi = ow.min((wd + spec.pad[1]).saturating_sub(kx));
                                for ox in lo..hi {
                                    dst[ox] += wv * row[ox + kx - spec.pad[1]];
                                }
                            } else {
                                for (ox, d) in dst.iter_mut().enumerate() {
                                    let ix = (ox * spec.stride + kx) as isize - spec.pad[1] as isize;
                                    if ix >= 0 && ix < ew as isize {
                                        *d += wv * row[ix as usize / up];
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if let Some(r) = residual {
                let rp = &r.data[(ni * co + o) * oh * ow..][..oh * ow];
                plane.iter_mut().zip(rp).for_each(|(v, r)| *v += r);
            }
            if out_scale != 1.0 {
                plane.iter_mut().for_each(|v| *v /= out_scale);
            }
        }
    }
    Tensor::new(vec![n, co, oh, ow], out)
}

/// torch.nn.functional.group_norm (biased variance), optionally followed by SiLU.
pub fn group_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, groups: usize, eps: f32, silu_after: bool) -> Result<Tensor> {
    let [n, c, h, w] = dims4(x, "group_norm input")?;
    if groups == 0 || c % groups != 0 || gamma.len() != c || beta.len() != c {
        return Err(Error::Input(format!("group_norm: {c} channels, {groups} groups, gamma {:?}", gamma.shape)));
    }
    let cg = c / groups;
    let span = cg * h * w;
    let mut out = x.data.clone();
    for ni in 0..n {
        for g in 0..groups {
            let base = (ni * c + g * cg) * h * w;
            let vals = &mut out[base..base + span];
            let mean = vals.iter().map(|&v| v as f64).sum::<f64>() / span as f64;
            let var = vals.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / span as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            for (j, v) in vals.iter_mut().enumerate() {
                let ch = g * cg + j / (h * w);
                let y = ((*v as f64 - mean) * inv) as f32 * gamma.data[ch] + beta.data[ch];
                *v = if silu_after { silu(y) } else { y };
            }
        }
    }
    Tensor::new(x.shape.clone(), out)
}

/// y[n,o] = act_out(Σ_i W[o,i]·act_in(x[n,i]) + b[o]).
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, silu_in: bool, silu_out: bool) -> Result<Tensor> {
    let n = *x.shape.first().ok_or_else(|| Error::Input("linear: input is a scalar".into()))?;
    let fin = x.len() / n.max(1);
    let fout = b.len();
    if w.len() != fout * fin {
        return Err(Error::Input(format!("linear: weight {:?} does not fit input {:?}", w.shape, x.shape)));
    }
    let mut out = vec![0.0; n * fout];
    for ni in 0..n {
        let xin: Vec<f32> = x.data[ni * fin..][..fin].iter().map(|&v| if silu_in { silu(v) } else { v }).collect();
        for o in 0..fout {
            let row = &w.data[o * fin..][..fin];
            let s = row.iter().zip(&xin).fold(0.0f32, |s, (a, b)| s + a * b) + b.data[o];
            out[ni * fout + o] = if silu_out { silu(s) } else { s };
        }
    }
    Tensor::new(vec![n, fout], out)
}

/// diffusers `get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift)`, f32 like torch.
pub fn timestep_embedding(t: &Tensor, dim: usize, flip_sin_to_cos: bool, shift: f32) -> Tensor {
    let half = dim / 2;
    let n = t.len();
    let mut out = vec![0.0f32; n * dim];
    for (ni, &tv) in t.data.iter().enumerate() {
        for k in 0..half {
            let exponent = -(10000f32.ln()) * k as f32 / (half as f32 - shift);
            let arg = tv * exponent.exp();
            let (s, c) = ((arg as f64).sin() as f32, (arg as f64).cos() as f32);
            let (first, second) = if flip_sin_to_cos { (c, s) } else { (s, c) };
            out[ni * dim + k] = first;
            out[ni * dim + half + k] = second;
        }
    }
    Tensor { shape: vec![n, dim], data: out }
}

/// emb[n, :] + table[labels[n], :]
pub fn class_embedding_add(emb: &Tensor, table: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let n = *emb.shape.first().ok_or_else(|| Error::Input("class embedding: embedding is a scalar".into()))?;
    let d = emb.len() / n.max(1);
    if labels.len() != n || d == 0 || !table.len().is_multiple_of(d) {
        return Err(Error::Input(format!(
            "class embedding: {} labels, embedding {:?} and table {:?} do not fit",
            labels.len(),
            emb.shape,
            table.shape
        )));
    }
    let classes = table.len() / d;
    let mut out = emb.data.clone();
    for ni in 0..n {
        let l = labels.data[ni];
        if l < 0.0 || l as usize >= classes || l.fract() != 0.0 {
            return Err(Error::Input(format!("class label {l} out of range 0..{classes}")));
        }
        let row = &table.data[l as usize * d..][..d];
        out[ni * d..][..d].iter_mut().zip(row).for_each(|(o, r)| *o += r);
    }
    Tensor::new(emb.shape.clone(), out)
}

pub fn affine(x: &Tensor, scale: f32, shift: f32) -> Tensor {
    Tensor { shape: x.shape.clone(), data: x.data.iter().map(|v| v * scale + shift).collect() }
}

/// torch.cat([a, b], dim=1) for NCHW tensors.
pub fn concat_channels(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let [n, ca, h, w] = dims4(a, "concat")?;
    let [nb, cb, hb, wb] = dims4(b, "concat")?;
    if (n, h, w) != (nb, hb, wb) {
        return Err(Error::Input(format!("concat: {:?} and {:?} differ outside the channel axis", a.shape, b.shape)));
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    for ni in 0..n {
        out.extend_from_slice(&a.data[ni * ca * h * w..][..ca * h * w]);
        out.extend_from_slice(&b.data[ni * cb * h * w..][..cb * h * w]);
    }
    Tensor::new(vec![n, ca + cb, h, w], out)
}

/// Per head h: out[:, h] = softmax(q_hᵀ k_h / √d) v_h, on [N, heads·d, H, W] with L = H·W positions.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, d: usize) -> Result<Tensor> {
    let [n, inner, h, w] = dims4(q, "attention q")?;
    if inner != heads * d || k.shape != q.shape || v.shape != q.shape {
        return Err(Error::Input(format!("attention: q {:?} k {:?} v {:?} for {heads} heads of {d}", q.shape, k.shape, v.shape)));
    }
    let l = h * w;
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0.0f32; q.len()];
    let mut p = vec![0.0f32; l];
    for ni in 0..n {
        for hd in 0..heads {
            let base = (ni * inner + hd * d) * l;
            for i in 0..l {
                for (j, pj) in p.iter_mut().enumerate() {
                    let mut s = 0.0f32;
                    for c in 0..d {
                        s += q.data[base + c * l + i] * k.data[base + c * l + j];
                    }
                    *pj = s * scale;
                }
                let m = p.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let mut sum = 0.0f32;
                p.iter_mut().for_each(|v| {
                    *v = (*v - m).exp();
                    sum += *v;
                });
                for c in 0..d {
                    let vr = &v.data[base + c * l..][..l];
                    let acc = vr.iter().zip(&p).fold(0.0f32, |s, (a, b)| s + a * b);
                    out[base + c * l + i] = acc / sum;
                }
            }
        }
    }
    Tensor::new(q.shape.clone(), out)
}

/// diffusers' `upfirdn2d_native(x, k⊗k, up, down, pad=(p0, p1))` on every channel: x upsampled by
/// inserting up − 1 zeros after each sample, padded with p0 zeros before and p1 after (both
/// axes), correlated with the flipped kernel, and every `down`-th value kept.
pub fn upfirdn2d(x: &Tensor, k: &[f32], up: usize, down: usize, pad: [usize; 2]) -> Result<Tensor> {
    let [n, c, h, w] = dims4(x, "upfirdn2d input")?;
    let kn = k.len();
    let (uh, uw) = (h * up + pad[0] + pad[1], w * up + pad[0] + pad[1]);
    if kn == 0 || up == 0 || down == 0 || uh < kn || uw < kn {
        return Err(Error::Input(format!("upfirdn2d: kernel of {kn} taps, up {up}, down {down}, pad {pad:?} on {h}x{w}")));
    }
    let (oh, ow) = ((uh - kn) / down + 1, (uw - kn) / down + 1);
    // The value of the upsampled, padded signal at p (one axis): x[(p − p0) / up] on the grid.
    let tap = |p: usize, len: usize| -> Option<usize> {
        let q = p.checked_sub(pad[0])?;
        (q % up == 0 && q / up < len).then_some(q / up)
    };
    let mut out = vec![0.0f32; n * c * oh * ow];
    for (plane, src) in out.chunks_mut(oh * ow).zip(x.data.chunks(h * w)) {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = 0.0f32;
                for i in 0..kn {
                    let Some(iy) = tap(oy * down + i, h) else { continue };
                    for j in 0..kn {
                        if let Some(ix) = tap(ox * down + j, w) {
                            s += k[kn - 1 - i] * k[kn - 1 - j] * src[iy * w + ix];
                        }
                    }
                }
                plane[oy * ow + ox] = s;
            }
        }
    }
    Tensor::new(vec![n, c, oh, ow], out)
}

/// The activations of `act_fn` (the CPU twin of `shaders/activation.wgsl`'s `act`).
pub fn activate(act: Activation, v: f32) -> f32 {
    match act {
        Activation::Silu => silu(v),
        // x · tanh(softplus(x)), softplus with torch's threshold of 20.
        Activation::Mish => v * (if v > 20.0 { v } else { v.exp().ln_1p() }).tanh(),
        Activation::Gelu => 0.5 * v * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2)),
        Activation::Relu => v.max(0.0),
    }
}

/// act(x·(1 + film[n, c]) + film[n, C + c]) (AdaGN), or act(x) without `film`.
pub fn activation(x: &Tensor, act: Activation, film: Option<&Tensor>) -> Result<Tensor> {
    let [n, c, h, w] = dims4(x, "activation input")?;
    if let Some(f) = film {
        if f.len() != n * 2 * c {
            return Err(Error::Input(format!("activation: scale-shift {:?} does not fit [{n}, 2·{c}]", f.shape)));
        }
    }
    let mut out = x.data.clone();
    for (i, plane) in out.chunks_mut(h * w).enumerate() {
        let (ni, ci) = (i / c, i % c);
        let (scale, shift) = film.map_or((0.0, 0.0), |f| (f.data[ni * 2 * c + ci], f.data[ni * 2 * c + c + ci]));
        plane.iter_mut().for_each(|v| *v = activate(act, *v * (1.0 + scale) + shift));
    }
    Tensor::new(x.shape.clone(), out)
}

/// `GaussianFourierProjection(log=True, flip_sin_to_cos=False)`: [sin, cos] of log(t)·w·2·π, in
/// f32 in torch's order of operations.
pub fn fourier_embedding(t: &Tensor, w: &Tensor) -> Tensor {
    let d = w.len();
    let mut out = vec![0.0f32; t.len() * 2 * d];
    for (row, &tv) in out.chunks_mut(2 * d).zip(&t.data) {
        for (j, &wj) in w.data.iter().enumerate() {
            let arg = tv.ln() * wj * 2.0 * std::f32::consts::PI;
            row[j] = (arg as f64).sin() as f32;
            row[d + j] = (arg as f64).cos() as f32;
        }
    }
    Tensor { shape: vec![t.len(), 2 * d], data: out }
}

/// table[index[n], :] for integer-valued `index` (`nn.Embedding`).
pub fn embedding(table: &Tensor, index: &Tensor) -> Result<Tensor> {
    let [rows, d, ..] = dims4(table, "embedding table")?;
    let mut out = Vec::with_capacity(index.len() * d);
    for &v in &index.data {
        if v < 0.0 || v.fract() != 0.0 || v as usize >= rows {
            return Err(Error::Input(format!("embedding index {v} is not a row of the {rows}-row table")));
        }
        out.extend_from_slice(&table.data[v as usize * d..][..d]);
    }
    Tensor::new(vec![index.len(), d], out)
}

pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape != b.shape {
        return Err(Error::Input(format!("add: shapes {:?} and {:?} differ", a.shape, b.shape)));
    }
    Tensor::new(a.shape.clone(), a.data.iter().zip(&b.data).map(|(x, y)| x + y).collect())
}

/// x[n, …] / t[n].
pub fn divide_by_timestep(x: &Tensor, t: &Tensor) -> Result<Tensor> {
    let n = *x.shape.first().ok_or_else(|| Error::Input("divide_by_timestep: a scalar".into()))?;
    if t.len() != n {
        return Err(Error::Input(format!("divide_by_timestep: {} timesteps for a batch of {n}", t.len())));
    }
    let per = x.len() / n.max(1);
    let data = x.data.chunks(per.max(1)).zip(&t.data).flat_map(|(c, &tv)| c.iter().map(move |v| v / tv)).collect();
    Tensor::new(x.shape.clone(), data)
}
