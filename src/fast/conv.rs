//! conv2d as a GEMM: out[n][co][p] = Σ_k W[co][k] · x̂[k][p] with k = (ci, ky, kx) in the
//! weights' own order, p an output pixel. Weights are packed once (`PackedA`).
//!
//! Every conv (3×3, 1×1, the stride-2 downsamplers, the upsamplers' conv over the 2× input) reads
//! one zero-padded (and upsampled) copy of the input item: tap (ci, ky, kx) of output pixel
//! (oy, ox) is at base(oy, ox) + ci·plane + ky·Wp + kx, with base(oy, ox) = oy·s·Wp + ox·s. The
//! GEMM takes each pixel's base and the taps' offsets (`gemm::Kernel::tile`), so there is no im2col
//! copy and no computed-then-dropped padding column. A 1×1 conv without padding reads its input.
//!
//! The epilogue fuses bias, the per-channel time-embedding add, the residual and the output scale
//! into the single store.

use super::gemm::{Kernel, PackedA, Taps, MC, NP};
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

/// What is added to every output and how it is stored.
struct Epilogue<'a> {
    bias: &'a [f32],
    /// chan_add[n, co] of this item, if any.
    add: Option<&'a [f32]>,
    /// The residual [Co, P] of this item, if any.
    residual: Option<&'a [f32]>,
    out_scale: f32,
    co: usize,
    pixels: usize,
}

impl Epilogue<'_> {
    /// Stores `acc` (pixel p0 + j, channel t·MC + i) into `rows` (channels t·MC.. as [P] rows):
    /// `n` ≤ NP pixels (the last tile's repeats of its last pixel are not stored).
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // i picks a column of acc and a row of the output
    fn store(&self, rows: &mut [f32], t: usize, acc: &[[f32; MC]; NP], p0: usize, n: usize) {
        for i in 0..MC.min(self.co - t * MC) {
            let o = t * MC + i;
            let add = self.bias[o] + self.add.map_or(0.0, |a| a[o]);
            let row = i * self.pixels + p0;
            if n < NP {
                for j in 0..n {
                    let v = acc[j][i] + add + self.residual.map_or(0.0, |r| r[o * self.pixels + p0 + j]);
                    rows[row + j] = if self.out_scale != 1.0 { v / self.out_scale } else { v };
                }
                continue;
            }
            // A full tile: fixed-size rows, so the bounds checks fold into one per row.
            let dst: &mut [f32; NP] = (&mut rows[row..][..NP]).try_into().expect("NP");
            match self.residual {
                None => (0..NP).for_each(|j| dst[j] = acc[j][i] + add),
                Some(r) => {
                    let r: &[f32; NP] = r[o * self.pixels + p0..][..NP].try_into().expect("NP");
                    (0..NP).for_each(|j| dst[j] = acc[j][i] + add + r[j]);
                }
            }
            if self.out_scale != 1.0 {
                dst.iter_mut().for_each(|v| *v /= self.out_scale);
            }
        }
    }
}

/// Where the GEMM reads: the taps' offsets and, per tile of NP consecutive output pixels, each
/// pixel's base in the padded input. Built once per call, shared by the batch's items.
struct Layout {
    taps: Taps,
    tiles: Vec<[usize; NP]>,
}

/// The zero-padded (and upsampled) copy of one input item; only its interior is rewritten per item.
struct Padded {
    /// Empty when the conv reads its input as it is (no padding, no upsampling).
    data: Vec<f32>,
    h: usize,
    w: usize,
    up: usize,
    pad_t: usize,
    pad_l: usize,
    wp: usize,
    plane: usize,
}

fn layout(cw: &ConvWeights, (h, w): (usize, usize), spec: ConvSpec, (oh, ow): (usize, usize)) -> (Layout, Padded) {
    let up = if spec.upsample { 2 } else { 1 };
    let [pad_t, pad_l, pad_b, pad_r] = spec.pad;
    let (hp, wp) = (h * up + pad_t + pad_b, w * up + pad_l + pad_r);
    let plane = hp * wp;
    let k = cw.k;
    let taps = Taps::new((0..cw.ci).flat_map(|c| (0..k).flat_map(move |ky| (0..k).map(move |kx| c * plane + ky * wp + kx))).collect());
    let (s, total) = (spec.stride, oh * ow);
    let tiles = (0..total.div_ceil(NP))
        .map(|t| {
            std::array::from_fn(|j| {
                let p = (t * NP + j).min(total - 1); // past the end: repeat the last pixel
                (p / ow) * s * wp + (p % ow) * s
            })
        })
        .collect();
    let direct = up == 1 && spec.pad == [0; 4];
    let data = if direct { Vec::new() } else { vec![0.0f32; cw.ci * plane] };
    (Layout { taps, tiles }, Padded { data, h, w, up, pad_t, pad_l, wp, plane })
}

impl Padded {
    /// Copies item `x` ([Ci, H, W]) into the interior (the border stays zero) and returns what the
    /// taps read: that buffer, or `x` itself when there is no padding.
    fn source<'a>(&'a mut self, x: &'a [f32]) -> &'a [f32] {
        if self.data.is_empty() {
            return x;
        }
        let (h, w, up) = (self.h, self.w, self.up);
        for (c, src) in x.chunks_exact(h * w).enumerate() {
            for y in 0..h * up {
                let row = &mut self.data[c * self.plane + (y + self.pad_t) * self.wp + self.pad_l..][..w * up];
                let src_row = &src[(y / up) * w..][..w];
                if up == 1 {
                    row.copy_from_slice(src_row);
                } else {
                    row.iter_mut().enumerate().for_each(|(xx, v)| *v = src_row[xx / up]);
                }
            }
        }
        &self.data
    }
}

/// The fused conv: (conv(x) + bias + chan_add[n, co] + residual) / out_scale, like `cpu::ops::conv2d`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    kernel: Kernel,
    x: &Tensor,
    cw: &ConvWeights,
    bias: &[f32],
    spec: ConvSpec,
    chan_add: Option<&Tensor>,
    residual: Option<&Tensor>,
    out_scale: f32,
) -> Result<Tensor> {
    let &[n, ci, h, w] = &x.shape[..] else {
        return Err(Error::Input(format!("conv2d: input must be [N, C, H, W], got {:?}", x.shape)));
    };
    let co = cw.co;
    if ci != cw.ci || bias.len() != co {
        return Err(Error::Input(format!(
            "conv2d: weight [{co}, {}, {k}, {k}] / bias {} do not fit input {:?}",
            cw.ci,
            bias.len(),
            x.shape,
            k = cw.k
        )));
    }
    let (oh, ow) = spec.out_size(h, w, cw.k).ok_or_else(|| Error::Input(format!("conv2d: input {h}x{w} too small")))?;
    let p_total = oh * ow;
    if chan_add.is_some_and(|a| a.len() != n * co) || residual.is_some_and(|r| r.len() != n * co * p_total) {
        return Err(Error::Input(format!("conv2d: channel add / residual do not fit the output [{n}, {co}, {oh}, {ow}]")));
    }
    let mut out = vec![0.0f32; n * co * p_total];
    let (layout, mut padded) = layout(cw, (h, w), spec, (oh, ow));
    for item in 0..n {
        let epi = Epilogue {
            bias,
            add: chan_add.map(|a| &a.data[item * co..][..co]),
            residual: residual.map(|r| &r.data[item * co * p_total..][..co * p_total]),
            out_scale,
            co,
            pixels: p_total,
        };
        let b = padded.source(&x.data[item * ci * h * w..][..ci * h * w]);
        let out_item = &mut out[item * co * p_total..][..co * p_total];
        // Channel tiles outer: the weight panel stays in cache while the pixel tiles sweep the input.
        for (t, rows) in out_item.chunks_mut(MC * p_total).enumerate() {
            for (pt, bases) in layout.tiles.iter().enumerate() {
                let acc = kernel.tile(cw.a.panel(t), b, bases, &layout.taps);
                epi.store(rows, t, &acc, pt * NP, NP.min(p_total - pt * NP));
            }
        }
    }
    Tensor::new(vec![n, co, oh, ow], out)
}
