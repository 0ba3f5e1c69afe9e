//! conv2d as a GEMM: out[n][co][p] = Σ_k W[co][k] · im2col(x)[k][p] with k = (ci, ky, kx) in the
//! weights' own order, p an output pixel. Weights are packed once (`PackedA`).
//! - Stride 1 (every 3×3 and 1×1 conv of a U-Net but the downsamplers): an indirect GEMM. The input
//!   is zero-padded (and 2×-upsampled for Upsample2D) once; outputs are computed on the padded
//!   width, so the B row of tap (ci, ky, kx) for NR consecutive outputs is the contiguous window at
//!   ci·plane + ky·Wp + kx: no im2col copy. The k−1 extra columns per row are computed and dropped.
//! - Stride 2: each tile of NR output pixels packs its im2col panel.
//!
//! The epilogue fuses bias, the per-channel time-embedding add, the residual and the output scale
//! into the single store.

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
    /// Stores `acc`, the outputs of channels t·MR.., into `rows` (those channels' [P] rows) at
    /// output pixels `px` (index into [P]; `DROP` = a column that is computed but not stored).
    #[inline]
    fn store(&self, rows: &mut [f32], t: usize, acc: &[[f32; NR]; MR], px: &[u32; NR]) {
        for (i, row) in acc.iter().enumerate().take(self.co - t * MR) {
            let o = t * MR + i;
            let add = self.bias[o] + self.add.map_or(0.0, |a| a[o]);
            let dst = &mut rows[i * self.pixels..][..self.pixels];
            let res = self.residual.map(|r| &r[o * self.pixels..][..self.pixels]);
            for (&v, &p) in row.iter().zip(px) {
                if p == DROP {
                    continue;
                }
                let p = p as usize;
                let v = v + add + res.map_or(0.0, |r| r[p]);
                dst[p] = if self.out_scale != 1.0 { v / self.out_scale } else { v };
            }
        }
    }
}

/// Marks a computed output that is not stored (past the end, or a padding column).
const DROP: u32 = u32::MAX;

/// The output pixel of each column of each NR-wide tile: tile i covers computed positions
/// i·NR.. of `total`, which map to `pixel(q)`.
fn tile_pixels(total: usize, pixel: impl Fn(usize) -> Option<usize>) -> Vec<[u32; NR]> {
    (0..total.div_ceil(NR))
        .map(|i| {
            std::array::from_fn(|j| {
                let q = i * NR + j;
                if q < total {
                    pixel(q).map_or(DROP, |p| p as u32)
                } else {
                    DROP
                }
            })
        })
        .collect()
}

/// A stride-1 conv as an indirect GEMM over the zero-padded (and upsampled) input: the padded
/// buffer, the tap offsets and the output pixel of each tile column, built once per call and
/// reused for every item of the batch (only the interior of `padded` is rewritten per item).
struct Stride1 {
    padded: Vec<f32>,
    offsets: Vec<usize>,
    pixels: Vec<[u32; NR]>,
    plane: usize,
    wp: usize,
}

impl Stride1 {
    fn new(cw: &ConvWeights, (oh, ow): (usize, usize)) -> Self {
        let k = cw.k;
        let (hp, wp) = (oh + k - 1, ow + k - 1);
        let plane = hp * wp;
        let offsets = (0..cw.ci).flat_map(|c| (0..k).flat_map(move |ky| (0..k).map(move |kx| c * plane + ky * wp + kx))).collect();
        let q_total = oh * wp;
        let pixels = tile_pixels(q_total, |q| (q % wp < ow).then_some(q / wp * ow + q % wp));
        // Reads of dropped outputs run up to NR + k past the last plane.
        Stride1 { padded: vec![0.0f32; cw.ci * plane + NR + k], offsets, pixels, plane, wp }
    }

    /// Copies item `x` into the interior of the padded buffer (the border stays zero).
    fn fill(&mut self, x: &[f32], ci: usize, geo: &Geometry) {
        let (pt, pl) = (geo.pad_t as usize, geo.pad_l as usize);
        for c in 0..ci {
            let src = &x[c * geo.h * geo.w..][..geo.h * geo.w];
            for y in 0..geo.eh as usize {
                let row = &mut self.padded[c * self.plane + (y + pt) * self.wp + pl..][..geo.ew as usize];
                let src_row = &src[(y / geo.up) * geo.w..][..geo.w];
                if geo.up == 1 {
                    row.copy_from_slice(src_row);
                } else {
                    row.iter_mut().enumerate().for_each(|(xx, v)| *v = src_row[xx / geo.up]);
                }
            }
        }
    }

    fn run(&self, kernel: Kernel, cw: &ConvWeights, epi: &Epilogue, out: &mut [f32]) {
        for_each_channel_tile(out, MR * epi.pixels, |t, rows| {
            for (i, px) in self.pixels.iter().enumerate() {
                let acc = kernel.tile_indirect(cw.a.panel(t), &self.padded[i * NR..], &self.offsets);
                epi.store(rows, t, &acc, px);
            }
        });
    }
}

/// Runs `f(t, rows)` for every tile t of MR output channels, `rows` being their part of `out`
/// (`tile_len` values each). Kept sequential: threads split the batch instead (`FastOps::forward`),
/// since per-op fork/join costs more than these small convolutions take (measured with rayon: 2×
/// slower on 2 cores, its idle workers spinning against the caller).
fn for_each_channel_tile(out: &mut [f32], tile_len: usize, f: impl Fn(usize, &mut [f32])) {
    out.chunks_mut(tile_len).enumerate().for_each(|(t, rows)| f(t, rows));
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
    let up = if spec.upsample { 2 } else { 1 };
    let geo = Geometry {
        h,
        w,
        eh: (h * up) as isize,
        ew: (w * up) as isize,
        up,
        stride: spec.stride,
        pad_t: spec.pad[0] as isize,
        pad_l: spec.pad[1] as isize,
    };
    let mut out = vec![0.0f32; n * co * p_total];
    let mut stride1 = (spec.stride == 1).then(|| Stride1::new(cw, (oh, ow)));
    let tiles_p = if stride1.is_some() { 0 } else { p_total.div_ceil(NR) };
    let mut panels = vec![0.0f32; tiles_p * cw.a.depth * NR];
    let pixels = if stride1.is_some() { Vec::new() } else { tile_pixels(p_total, Some) };
    for item in 0..n {
        let xs = &x.data[item * ci * h * w..][..ci * h * w];
        let out_item = &mut out[item * co * p_total..][..co * p_total];
        let epi = Epilogue {
            bias,
            add: chan_add.map(|a| &a.data[item * co..][..co]),
            residual: residual.map(|r| &r.data[item * co * p_total..][..co * p_total]),
            out_scale,
            co,
            pixels: p_total,
        };
        if let Some(s1) = stride1.as_mut() {
            s1.fill(xs, ci, &geo);
            s1.run(kernel, cw, &epi, out_item);
            continue;
        }
        // Strided convs (the downsamplers): im2col panels of every pixel tile, then the GEMM.
        for (pt, panel) in panels.chunks_exact_mut(cw.a.depth * NR).enumerate() {
            geo.pack_panel(xs, cw, ow, pt * NR, NR.min(p_total - pt * NR), panel);
        }
        for_each_channel_tile(out_item, MR * p_total, |t, rows| {
            for (panel, px) in panels.chunks_exact(cw.a.depth * NR).zip(&pixels) {
                let acc = kernel.tile(cw.a.panel(t), panel);
                epi.store(rows, t, &acc, px);
            }
        });
    }
    Tensor::new(vec![n, co, oh, ow], out)
}
