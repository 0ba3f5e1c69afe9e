//! conv2d as a GEMM: out[n][co][p] = Σ_k W[co][k] · im2col(x)[k][p] with k = (ci, ky, kx) in the
//! weights' own order, p an output pixel. Weights are packed once (`PackedA`); each tile of NR
//! output pixels packs its im2col panel (zero padding, stride, 2× nearest upsample all handled
//! there) and runs the microkernel against every weight panel; the epilogue fuses bias, the
//! per-channel time-embedding add, the residual and the output scale into the single store.

use super::gemm::{Kernel, PackedA, MR, NR};
use crate::error::{Error, Result};
use crate::model::ConvSpec;
use crate::tensor::Tensor;

/// A conv weight [Co, Ci, k, k] packed for the GEMM.
#[derive(Clone, Debug)]
pub struct ConvWeights {
    pub co: usize,
    pub ci: usize,
    pub k: usize,
    pub a: PackedA,
}

impl ConvWeights {
    pub fn pack(w: &Tensor) -> Result<Self> {
        let &[co, ci, k, k2] = &w.shape[..] else {
            return Err(Error::Input(format!("conv2d: weight must be [Co, Ci, k, k], got {:?}", w.shape)));
        };
        if k != k2 {
            return Err(Error::Input(format!("conv2d: non-square kernel {:?}", w.shape)));
        }
        Ok(ConvWeights { co, ci, k, a: PackedA::pack(&w.data, co, ci * k * k) })
    }
}

/// Where the input pixel of each tap comes from, per output pixel of the tile.
struct Geometry {
    h: usize,
    w: usize,
    /// Size of the (possibly upsampled) input the taps index.
    eh: isize,
    ew: isize,
    up: usize,
    stride: usize,
    pad_t: isize,
    pad_l: isize,
}

impl Geometry {
    /// Packs the im2col panel [K][NR] of the pixels p0.. (p0 + NR) of item `x` ([Ci, H, W]).
    fn pack_panel(&self, x: &[f32], cw: &ConvWeights, ow: usize, p0: usize, pixels: usize, panel: &mut [f32]) {
        let k = cw.k;
        let mut oy = [0isize; NR];
        let mut ox = [0isize; NR];
        for j in 0..NR {
            let p = p0 + j.min(pixels - 1); // past the end: repeat the last pixel (its column is not stored)
            oy[j] = ((p / ow) * self.stride) as isize - self.pad_t;
            ox[j] = ((p % ow) * self.stride) as isize - self.pad_l;
        }
        let plane = self.h * self.w;
        let mut row = 0;
        for c in 0..cw.ci {
            let src = &x[c * plane..][..plane];
            for ky in 0..k as isize {
                for kx in 0..k as isize {
                    let dst: &mut [f32; NR] = (&mut panel[row * NR..][..NR]).try_into().expect("NR");
                    for j in 0..NR {
                        let (iy, ix) = (oy[j] + ky, ox[j] + kx);
                        dst[j] = if iy >= 0 && iy < self.eh && ix >= 0 && ix < self.ew {
                            src[(iy as usize / self.up) * self.w + ix as usize / self.up]
                        } else {
                            0.0
                        };
                    }
                    row += 1;
                }
            }
        }
    }
}

/// The fused conv: (conv(x) + bias + chan_add[n, co] + residual) / out_scale, like `cpu::ops::conv2d`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(kernel: Kernel, x: &Tensor, cw: &ConvWeights, bias: &[f32], spec: ConvSpec, chan_add: Option<&Tensor>,
              residual: Option<&Tensor>, out_scale: f32) -> Result<Tensor> {
    let &[n, ci, h, w] = &x.shape[..] else {
        return Err(Error::Input(format!("conv2d: input must be [N, C, H, W], got {:?}", x.shape)));
    };
    let co = cw.co;
    if ci != cw.ci || bias.len() != co {
        return Err(Error::Input(format!("conv2d: weight [{co}, {}, {k}, {k}] / bias {} do not fit input {:?}", cw.ci, bias.len(), x.shape, k = cw.k)));
    }
    let (oh, ow) = spec.out_size(h, w, cw.k).ok_or_else(|| Error::Input(format!("conv2d: input {h}x{w} too small")))?;
    let p_total = oh * ow;
    if chan_add.is_some_and(|a| a.len() != n * co) || residual.is_some_and(|r| r.len() != n * co * p_total) {
        return Err(Error::Input(format!("conv2d: channel add / residual do not fit the output [{n}, {co}, {oh}, {ow}]")));
    }
    let up = if spec.upsample { 2 } else { 1 };
    let geo = Geometry {
        h, w, eh: (h * up) as isize, ew: (w * up) as isize, up, stride: spec.stride, pad_t: spec.pad[0] as isize, pad_l: spec.pad[1] as isize,
    };
    let depth = cw.a.depth;
    let mut out = vec![0.0f32; n * co * p_total];
    let mut panel = vec![0.0f32; depth * NR];
    let inv = out_scale != 1.0;
    for item in 0..n {
        let xs = &x.data[item * ci * h * w..][..ci * h * w];
        let out_item = &mut out[item * co * p_total..][..co * p_total];
        for p0 in (0..p_total).step_by(NR) {
            let pixels = NR.min(p_total - p0);
            geo.pack_panel(xs, cw, ow, p0, pixels, &mut panel);
            for t in 0..cw.a.tiles() {
                let acc = kernel.tile(cw.a.panel(t), &panel);
                for (i, acc_row) in acc.iter().enumerate().take(co - t * MR).take(MR) {
                    let o = t * MR + i;
                    let add = bias[o] + chan_add.map_or(0.0, |a| a.data[item * co + o]);
                    let dst = &mut out_item[o * p_total + p0..][..pixels];
                    let res = residual.map(|r| &r.data[(item * co + o) * p_total + p0..][..pixels]);
                    for j in 0..pixels {
                        let mut v = acc_row[j] + add;
                        if let Some(r) = res {
                            v += r[j];
                        }
                        dst[j] = if inv { v / out_scale } else { v };
                    }
                }
            }
        }
    }
    Tensor::new(vec![n, co, oh, ow], out)
}
