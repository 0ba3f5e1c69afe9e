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
//! into the single store. A ResnetBlock2D's group norm + SiLU is applied as the padded copy is
//! made (`PreNorm`), so the normalised activation is never stored.

use super::gemm::{Kernel, PackedA, Taps, MC, NP};
use super::norm;
use super::winograd::{self, WinogradWeights};
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
    /// The weights transformed for `winograd` too, for a 3×3 conv with few enough channels.
    pub winograd: Option<WinogradWeights>,
}

impl ConvWeights {
    /// `winograd`: also transform a 3×3 weight of at most `winograd::MAX_CHANNEL_PAIRS` (ci, co)
    /// for the stride-1 convs (the caller knows which weights those are).
    pub fn pack(w: &Tensor, winograd: bool) -> Result<Self> {
        let &[co, ci, k, k2] = &w.shape[..] else {
            return Err(Error::Input(format!("conv2d: weight must be [Co, Ci, k, k], got {:?}", w.shape)));
        };
        if k != k2 {
            return Err(Error::Input(format!("conv2d: non-square kernel {:?}", w.shape)));
        }
        let winograd = (winograd && k == 3 && winograd::worth_it(co, ci)).then(|| WinogradWeights::pack(&w.data, co, ci));
        Ok(ConvWeights { co, ci, k, a: PackedA::pack(&w.data, co, ci * k * k), winograd })
    }
}

/// A pixel tile's accumulators are stored two channel tiles per row (`Kernel::tile2`).
const ACC_STRIDE: usize = 2 * MC;

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
    /// dst[j] = (src[j] + bias + add + residual) / out_scale for pixels p0.. of channel o.
    fn finish(&self, o: usize, p0: usize, src: &[f32], dst: &mut [f32]) {
        let add = self.bias[o] + self.add.map_or(0.0, |a| a[o]);
        match self.residual {
            None => dst.iter_mut().zip(src).for_each(|(d, s)| *d = s + add),
            Some(r) => dst.iter_mut().zip(src.iter().zip(&r[o * self.pixels + p0..])).for_each(|(d, (s, r))| *d = s + add + r),
        }
        if self.out_scale != 1.0 {
            dst.iter_mut().for_each(|v| *v /= self.out_scale);
        }
    }

    /// Stores `acc` (pixel p0 + j, channel t·MC + i at acc[j·ACC_STRIDE + i]) into `rows`
    /// (channels t·MC.. as [P] rows): `n` ≤ NP pixels (the last tile's repeats of its last pixel
    /// are not stored).
    #[inline(always)]
    fn store(&self, kernel: Kernel, rows: &mut [f32], t: usize, acc: &[f32], p0: usize, n: usize) {
        assert!(acc.len() >= (NP - 1) * ACC_STRIDE + MC, "conv accumulators out of bounds");
        #[cfg(target_arch = "x86_64")]
        if kernel.avx2() && self.co - t * MC >= MC {
            // SAFETY: avx2 and fma were detected on this CPU (`Kernel::avx2`).
            return unsafe { self.store_avx2(rows, t, acc, p0, n) };
        }
        let _ = kernel;
        self.store_scalar(rows, t, acc, p0, n)
    }

    /// `store` for a whole tile of MC channels: 8 × 8 blocks of the tile (pixels × channels,
    /// the last two pixels zero) transposed in registers, each channel's pixels then stored as
    /// one masked vector (`finish8`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn store_avx2(&self, rows: &mut [f32], t: usize, acc: &[f32], p0: usize, n: usize) {
        use std::arch::x86_64::*;
        const { assert!(MC == 16 && NP <= 8) };
        for half in 0..2 {
            // SAFETY: j·ACC_STRIDE + half·8 + 8 ≤ (NP − 1)·ACC_STRIDE + MC ≤ acc.len() (`store`).
            let mut r: [__m256; 8] = std::array::from_fn(|j| {
                if j < NP {
                    unsafe { _mm256_loadu_ps(acc.as_ptr().add(j * ACC_STRIDE + half * 8)) }
                } else {
                    _mm256_setzero_ps()
                }
            });
            transpose8(&mut r);
            for (l, &v) in r.iter().enumerate() {
                self.finish8(t * MC + half * 8 + l, half * 8 + l, p0, n, v, rows);
            }
        }
    }

    /// `finish` for the `n` ≤ 8 pixels p0.. of channel o held in `v`, stored masked into row
    /// `row` of `dst` ([P] rows; the residual is read at channel o's).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn finish8(&self, o: usize, row: usize, p0: usize, n: usize, v: std::arch::x86_64::__m256, dst: &mut [f32]) {
        use std::arch::x86_64::*;
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        let (at, res_at) = (row * self.pixels + p0, o * self.pixels + p0);
        assert!(n <= 8 && at + n <= dst.len() && self.residual.is_none_or(|r| res_at + n <= r.len()), "conv store out of bounds");
        let mut v = _mm256_add_ps(v, _mm256_set1_ps(self.bias[o] + self.add.map_or(0.0, |a| a[o])));
        if let Some(res) = self.residual {
            // SAFETY: lanes past n are masked off; the lanes below n are in bounds (asserted).
            v = _mm256_add_ps(v, unsafe { _mm256_maskload_ps(res.as_ptr().add(res_at), mask) });
        }
        if self.out_scale != 1.0 {
            v = _mm256_div_ps(v, _mm256_set1_ps(self.out_scale));
        }
        // SAFETY: as above.
        unsafe { _mm256_maskstore_ps(dst.as_mut_ptr().add(at), mask, v) };
    }

    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // i picks a column of acc and a row of the output
    fn store_scalar(&self, rows: &mut [f32], t: usize, acc: &[f32], p0: usize, n: usize) {
        for i in 0..MC.min(self.co - t * MC) {
            let o = t * MC + i;
            let add = self.bias[o] + self.add.map_or(0.0, |a| a[o]);
            let row = i * self.pixels + p0;
            if n < NP {
                for j in 0..n {
                    let v = acc[j * ACC_STRIDE + i] + add + self.residual.map_or(0.0, |r| r[o * self.pixels + p0 + j]);
                    rows[row + j] = if self.out_scale != 1.0 { v / self.out_scale } else { v };
                }
                continue;
            }
            // A full tile: fixed-size rows, so the bounds checks fold into one per row.
            let dst: &mut [f32; NP] = (&mut rows[row..][..NP]).try_into().expect("NP");
            match self.residual {
                None => (0..NP).for_each(|j| dst[j] = acc[j * ACC_STRIDE + i] + add),
                Some(r) => {
                    let r: &[f32; NP] = r[o * self.pixels + p0..][..NP].try_into().expect("NP");
                    (0..NP).for_each(|j| dst[j] = acc[j * ACC_STRIDE + i] + add + r[j]);
                }
            }
            if self.out_scale != 1.0 {
                dst.iter_mut().for_each(|v| *v /= self.out_scale);
            }
        }
    }
}

/// Transposes 8 × 8 floats in registers (rows become columns).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) fn transpose8(r: &mut [std::arch::x86_64::__m256; 8]) {
    use std::arch::x86_64::*;
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    r[0] = _mm256_permute2f128_ps::<0x20>(s0, s4);
    r[1] = _mm256_permute2f128_ps::<0x20>(s1, s5);
    r[2] = _mm256_permute2f128_ps::<0x20>(s2, s6);
    r[3] = _mm256_permute2f128_ps::<0x20>(s3, s7);
    r[4] = _mm256_permute2f128_ps::<0x31>(s0, s4);
    r[5] = _mm256_permute2f128_ps::<0x31>(s1, s5);
    r[6] = _mm256_permute2f128_ps::<0x31>(s2, s6);
    r[7] = _mm256_permute2f128_ps::<0x31>(s3, s7);
}

/// A band's padded input stays within this many bytes by default (a 256×256 model's padded input
/// would otherwise be one more copy of its largest activation).
pub const BAND_BYTES: usize = 4 << 20;

/// silu(group_norm(x)) in front of a conv: γ, β (one per input channel), groups, ε.
#[derive(Clone, Copy)]
pub struct PreNorm<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub groups: usize,
    pub eps: f32,
}

/// Where a conv reads. Its input is zero-padded (and upsampled) one band of output rows at a time
/// into a buffer of `ci` planes of `band_hp` × `wp`; tap (ci, ky, kx) of a pixel is at
/// ci·plane + ky·wp + kx past the pixel's base. A conv without padding or upsampling reads its
/// input as it is, in one band.
struct Bands {
    taps: Taps,
    /// Output rows per band (the last band may have fewer).
    rows: usize,
    direct: bool,
    ci: usize,
    h: usize,
    w: usize,
    up: usize,
    k: usize,
    stride: usize,
    pad_t: usize,
    pad_l: usize,
    wp: usize,
    plane: usize,
    ow: usize,
}

impl Bands {
    /// `copied`: the input is normalised, or a 3×3 conv's comes in parts, so even an unpadded conv
    /// reads a copy (a 1×1 conv over parts reads each part in place: `Direct::parts`).
    fn new(cw: &ConvWeights, (h, w): (usize, usize), spec: ConvSpec, (oh, ow): (usize, usize), band_bytes: usize, copied: bool) -> Self {
        let up = if spec.upsample { 2 } else { 1 };
        let wp = w * up + spec.pad[1] + spec.pad[3];
        let direct = up == 1 && spec.pad == [0; 4] && !copied;
        let rows = if direct { oh } else { (band_bytes / (4 * cw.ci * spec.stride * wp).max(1)).clamp(1, oh) };
        Self::with_rows(cw.ci, cw.k, (h, w), spec, ow, rows, direct)
    }

    /// The bands of a Winograd conv (`winograd::fits`): an even number of output rows each, and
    /// padded rows of 2·tw + 2 columns for ⌈ow/2⌉ = tw tiles (one more zero column where ow is
    /// odd). A band's tile rows are sized so that its transformed input and output stay within
    /// `band_bytes`. Returns the bands, tw and the tile rows per band.
    fn winograd(cw: &ConvWeights, hw: (usize, usize), spec: ConvSpec, (oh, ow): (usize, usize), band_bytes: usize) -> (Self, usize, usize) {
        let (tw, th) = (ow.div_ceil(2), oh.div_ceil(2));
        let trows = (band_bytes / (4 * 16 * (cw.ci + cw.co) * tw).max(1)).clamp(1, th);
        let spec = ConvSpec { pad: [1, 1, 1, 1 + 2 * tw - ow], ..spec };
        (Self::with_rows(cw.ci, cw.k, hw, spec, ow, 2 * trows, false), tw, trows)
    }

    fn with_rows(ci: usize, k: usize, (h, w): (usize, usize), spec: ConvSpec, ow: usize, rows: usize, direct: bool) -> Self {
        let up = if spec.upsample { 2 } else { 1 };
        let [pad_t, pad_l, _, pad_r] = spec.pad;
        let (stride, wp) = (spec.stride, w * up + pad_l + pad_r);
        let plane = if direct { h * w } else { ((rows - 1) * stride + k) * wp };
        // Plain loops: a `flat_map` of them cost 1 % of a forward (its `next` is not inlined).
        let mut offsets = Vec::with_capacity(ci * k * k);
        for c in 0..ci {
            for ky in 0..k {
                for kx in 0..k {
                    offsets.push(c * plane + ky * wp + kx);
                }
            }
        }
        let taps = Taps::new(offsets);
        Bands { taps, rows, direct, ci, h, w, up, k, stride, pad_t, pad_l, wp, plane, ow }
    }

    /// A buffer for one band of the padded input (none for a direct conv).
    fn buffer(&self) -> Vec<f32> {
        if self.direct {
            Vec::new()
        } else {
            vec![0.0; self.ci * self.plane]
        }
    }

    /// Fills `band` with the padded input of output rows oy0.. oy0 + rows of one item, the
    /// concatenation along channels of `x`'s parts ([C_k, H, W] each), each channel mapped through
    /// silu(x·scale + shift) where `affine` gives (scale, shift), and returns what the taps read:
    /// `band`, or the one part itself for a direct conv.
    fn source<'a>(
        &self,
        band: &'a mut [f32],
        normed: &mut Vec<f32>,
        x: &[&'a [f32]],
        affine: Option<&[(f32, f32)]>,
        oy0: usize,
        rows: usize,
    ) -> &'a [f32] {
        if self.direct {
            return x[0];
        }
        let read = self.rows_read(oy0, rows);
        for (c, src) in x.iter().flat_map(|part| part.chunks_exact(self.h * self.w)).enumerate() {
            let plane = &mut band[c * self.plane..][..self.plane];
            self.fill_channel(plane, normed, src, affine.map(|a| a[c]), oy0, read, false);
        }
        band
    }

    /// The padded rows of a band of `rows` output rows from oy0, and the input rows they read
    /// (first..end).
    fn rows_read(&self, oy0: usize, rows: usize) -> (usize, usize, usize) {
        let (h, up) = (self.h, self.up);
        let band_rows = (rows - 1) * self.stride + self.k;
        let y0 = (oy0 * self.stride) as isize - self.pad_t as isize;
        let first = y0.max(0) as usize / up;
        let end = (y0 + band_rows as isize - 1).clamp(-1, (h * up) as isize - 1);
        let end = if end < 0 { first } else { (end as usize / up + 1).max(first) };
        (band_rows, first, end)
    }

    /// One channel's padded plane of a band (`source`): `src` is the channel ([H, W]), mapped
    /// through silu(x·scale + shift) where `affine` gives (scale, shift); `read` is `rows_read`.
    /// `split` (Winograd) writes the plane as its four quarters (`split_row`).
    #[allow(clippy::too_many_arguments)]
    fn fill_channel(
        &self,
        plane: &mut [f32],
        normed: &mut Vec<f32>,
        src: &[f32],
        affine: Option<(f32, f32)>,
        oy0: usize,
        (band_rows, first, end): (usize, usize, usize),
        split: bool,
    ) {
        let (h, w, up, wp) = (self.h, self.w, self.up, self.wp);
        // Normalised in one contiguous run (rows of 7 to 28 pixels would leave SIMD loops mostly
        // in their scalar tails), then copied into the padded rows.
        let (src, first) = match affine {
            None => (src, 0),
            Some((scale, shift)) => {
                normed.resize((end - first) * w, 0.0);
                norm::affine_silu_row(&src[first * w..end * w], normed, scale, shift);
                (&normed[..], first)
            }
        };
        for r in 0..band_rows {
            // The (upsampled) input row under padded row r of this band.
            let y = (oy0 * self.stride + r).checked_sub(self.pad_t).filter(|&y| y < h * up);
            let src_row = y.map(|y| &src[(y / up - first) * w..][..w]);
            if split {
                self.split_row(plane, band_rows, r, src_row);
                continue;
            }
            let row = &mut plane[r * wp..][..wp];
            let Some(src_row) = src_row else {
                row.fill(0.0);
                continue;
            };
            let (left, rest) = row.split_at_mut(self.pad_l);
            let (mid, right) = rest.split_at_mut(w * up);
            left.fill(0.0);
            right.fill(0.0);
            if up == 1 {
                mid.copy_from_slice(src_row);
            } else {
                mid.iter_mut().enumerate().for_each(|(xx, v)| *v = src_row[xx / up]);
            }
        }
    }

    /// Padded row r of a Winograd band (pad 1 left, `wp` = 2·tw + 2 columns), written into the
    /// channel's quarters: its even columns to quarter 2·(r % 2), its odd ones to the next, as
    /// row r / 2 of (band_rows / 2) rows of wp / 2. The input transform reads the quarters as they
    /// are; splitting here saves it a pass over the band.
    fn split_row(&self, plane: &mut [f32], band_rows: usize, r: usize, src_row: Option<&[f32]>) {
        let s = self.wp / 2;
        let qn = band_rows / 2 * s;
        let at = 2 * (r % 2) * qn + (r / 2) * s;
        let (even, odd) = plane[at..].split_at_mut(qn);
        let (even, odd) = (&mut even[..s], &mut odd[..s]);
        let Some(src) = src_row else {
            even.fill(0.0);
            odd.fill(0.0);
            return;
        };
        let w = src.len();
        even[0] = 0.0;
        if self.up == 2 {
            // Padded column j holds src[(j − 1) / 2]: even column m src[m − 1], odd m src[m].
            even[1..=w].copy_from_slice(src);
            odd[..w].copy_from_slice(src);
            even[w + 1..].fill(0.0);
            odd[w..].fill(0.0);
            return;
        }
        // Padded column j holds src[j − 1]: even column m src[2m − 1], odd m src[2m].
        for (m, pair) in src.chunks_exact(2).enumerate() {
            (odd[m], even[m + 1]) = (pair[0], pair[1]);
        }
        let half = w / 2;
        if w % 2 == 1 {
            odd[half] = src[w - 1];
        }
        even[half + 1..].fill(0.0);
        odd[w.div_ceil(2)..].fill(0.0);
    }

    /// Each pixel's base for the tiles of NP consecutive pixels of a band of `count` pixels
    /// (past the end, the last pixel repeats; its results are not stored).
    fn tiles(&self, count: usize) -> Vec<[usize; NP]> {
        let (s, ow, wp) = (self.stride, self.ow, self.wp);
        let bases: Vec<usize> = (0..count).map(|q| (q / ow) * s * wp + (q % ow) * s).collect();
        bases.chunks(NP).map(|c| std::array::from_fn(|j| c[j.min(c.len() - 1)])).collect()
    }
}

/// The fused conv: (conv(x̂) + bias + chan_add[n, co] + residual) / out_scale, like `cpu::ops::conv2d`,
/// where x is the concatenation of `parts` along channels (an up block's input, never stored) and
/// x̂ = silu(group_norm(x)) where `pre` is given, x̂ = x elsewhere; it reads its padded input in
/// bands of at most `band_bytes` (at least one output row). With `winograd`, a conv that
/// `winograd::fits` and whose weights were transformed runs as F(2×2, 3×3).
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    kernel: Kernel,
    parts: &[&Tensor],
    pre: Option<PreNorm>,
    cw: &ConvWeights,
    bias: &[f32],
    spec: ConvSpec,
    chan_add: Option<&Tensor>,
    residual: Option<&Tensor>,
    out_scale: f32,
    band_bytes: usize,
    winograd: bool,
) -> Result<Tensor> {
    let shapes: Vec<_> = parts.iter().map(|p| &p.shape[..]).collect();
    let (n, h, w) = match shapes.first() {
        Some(&&[n, _, h, w]) if shapes.iter().all(|s| s.len() == 4 && (s[0], s[2], s[3]) == (n, h, w)) => (n, h, w),
        _ => return Err(Error::Input(format!("conv2d: input must be [N, C, H, W] parts of one N, H, W, got {shapes:?}"))),
    };
    let part_c: Vec<usize> = shapes.iter().map(|s| s[1]).collect();
    let ci = part_c.iter().sum::<usize>();
    let co = cw.co;
    if ci != cw.ci || bias.len() != co {
        return Err(Error::Input(format!(
            "conv2d: weight [{co}, {}, {k}, {k}] / bias {} do not fit input {:?}",
            cw.ci,
            bias.len(),
            shapes,
            k = cw.k
        )));
    }
    if let Some(p) = pre {
        if p.groups == 0 || !ci.is_multiple_of(p.groups) || p.gamma.len() != ci || p.beta.len() != ci {
            return Err(Error::Input(format!("group_norm: {ci} channels, {} groups, gamma of {}", p.groups, p.gamma.len())));
        }
    }
    let (oh, ow) = spec.out_size(h, w, cw.k).ok_or_else(|| Error::Input(format!("conv2d: input {h}x{w} too small")))?;
    let p_total = oh * ow;
    if chan_add.is_some_and(|a| a.len() != n * co) || residual.is_some_and(|r| r.len() != n * co * p_total) {
        return Err(Error::Input(format!("conv2d: channel add / residual do not fit the output [{n}, {co}, {oh}, {ow}]")));
    }
    let mut out = vec![0.0f32; n * co * p_total];
    // A 1×1 conv without padding reads its parts where they are (one GEMM over each part's
    // channels); anything else reads a padded, normalised or concatenated copy.
    let copied = pre.is_some() || (parts.len() > 1 && cw.k != 1);
    let wino = cw.winograd.as_ref().filter(|_| winograd && winograd::fits(spec, cw.k) && !few_channels(co, spec.stride));
    let mut path = match wino {
        Some(u) => Path::Winograd(u, Bands::winograd(cw, (h, w), spec, (oh, ow), band_bytes), take_scratch()),
        None => Path::Direct(Direct::new(cw, (h, w), spec, (oh, ow), band_bytes, copied, &part_c)),
    };
    for item in 0..n {
        let epi = Epilogue {
            bias,
            add: chan_add.map(|a| &a.data[item * co..][..co]),
            residual: residual.map(|r| &r.data[item * co * p_total..][..co * p_total]),
            out_scale,
            co,
            pixels: p_total,
        };
        let xs: Vec<&[f32]> = parts.iter().zip(&part_c).map(|(p, &c)| &p.data[item * c * h * w..][..c * h * w]).collect();
        let affine = pre.map(|p| norm::channel_affine(&xs, h * w, p.gamma, p.beta, p.groups, p.eps));
        let out_item = &mut out[item * co * p_total..][..co * p_total];
        match &mut path {
            Path::Direct(d) => d.item(kernel, cw, &xs, affine.as_deref(), &epi, out_item, oh),
            Path::Winograd(u, bands, scratch) => winograd_item(kernel, u, bands, scratch, &xs, affine.as_deref(), &epi, out_item, (oh, ow)),
        }
    }
    if let Path::Winograd(_, _, scratch) = path {
        WINOGRAD_SCRATCH.lock().unwrap_or_else(|p| p.into_inner()).push(scratch);
    }
    Tensor::new(vec![n, co, oh, ow], out)
}

/// Winograd scratch kept from one conv to the next, one per conv running at once (a thread of a
/// batch split takes one and puts it back): fresh buffers of this size come from mmap, and
/// faulting their pages in cost more than the transforms. A pool rather than a thread-local,
/// because a batch split's threads are made per forward and their thread-locals die with them.
static WINOGRAD_SCRATCH: std::sync::Mutex<Vec<WinogradScratch>> = std::sync::Mutex::new(Vec::new());

fn take_scratch() -> WinogradScratch {
    WINOGRAD_SCRATCH.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default()
}

/// How a conv runs: directly (the GEMM over taps) or as F(2×2, 3×3).
enum Path<'a> {
    Direct(Direct),
    Winograd(&'a WinogradWeights, (Bands, usize, usize), WinogradScratch),
}

/// The direct conv's bands and the tiles of pixels they hold.
struct Direct {
    bands: Bands,
    band: Vec<f32>,
    normed: Vec<f32>,
    /// The tiles of a full band, and of the last band where it is shorter: built once per call.
    full_tiles: Vec<[usize; NP]>,
    last_tiles: Vec<[usize; NP]>,
    /// Where a conv reads several parts in place: each part's first channel and taps.
    parts: Vec<(usize, Taps)>,
    /// `few_channels_band`'s scratch.
    few: Vec<f32>,
}

impl Direct {
    #[allow(clippy::too_many_arguments)]
    fn new(
        cw: &ConvWeights,
        hw: (usize, usize),
        spec: ConvSpec,
        (oh, ow): (usize, usize),
        band_bytes: usize,
        copied: bool,
        part_c: &[usize],
    ) -> Self {
        let bands = Bands::new(cw, hw, spec, (oh, ow), band_bytes, copied);
        let mut parts = Vec::new();
        if bands.direct && part_c.len() > 1 {
            let mut c0 = 0;
            for &c in part_c {
                parts.push((c0, Taps::new(bands.taps.offsets()[..c].to_vec())));
                c0 += c;
            }
        }
        let last_rows = oh - (oh - 1) / bands.rows * bands.rows;
        let full_tiles = bands.tiles(bands.rows * ow);
        let last_tiles = if last_rows < bands.rows { bands.tiles(last_rows * ow) } else { Vec::new() };
        Direct { band: bands.buffer(), normed: Vec::new(), bands, full_tiles, last_tiles, parts, few: Vec::new() }
    }

    /// One item, band by band of output rows.
    #[allow(clippy::too_many_arguments)]
    fn item(
        &mut self,
        kernel: Kernel,
        cw: &ConvWeights,
        xs: &[&[f32]],
        affine: Option<&[(f32, f32)]>,
        epi: &Epilogue,
        out_item: &mut [f32],
        oh: usize,
    ) {
        let (bands, ow, p_total) = (&self.bands, self.bands.ow, epi.pixels);
        for oy0 in (0..oh).step_by(bands.rows) {
            let rows = bands.rows.min(oh - oy0);
            let (p0, count) = (oy0 * ow, rows * ow);
            let tiles = if rows < bands.rows { &self.last_tiles } else { &self.full_tiles };
            let b = bands.source(&mut self.band, &mut self.normed, xs, affine, oy0, rows);
            // What the GEMM reads: each part in place (its first channel, its taps), or the band.
            let sources: Vec<(usize, &Taps, &[f32])> = if self.parts.is_empty() {
                vec![(0, &bands.taps, b)]
            } else {
                self.parts.iter().zip(xs).map(|((c0, taps), x)| (*c0, taps, *x)).collect()
            };
            if few_channels(cw.co, bands.stride) {
                few_channels_band(cw, &sources, bands.wp, (p0, rows, ow), &mut self.few, epi, out_item);
                continue;
            }
            // Channel tiles outer: the weight panel stays in cache while the pixel tiles sweep the band.
            // Sequential: threads split the batch instead (`FastOps::forward_batch`); per-op
            // fork/join cost more than these convs take (rayon measured 2× slower on 2 cores).
            // Where the kernel computes two channel tiles per pass (`Kernel::pairs`), the rows
            // come two tiles at a time (the last chunk may hold one). `acc` holds a pixel tile's
            // accumulators, summed over the sources.
            let step = if kernel.pairs() { 2 } else { 1 };
            let mut acc = [0f32; NP * ACC_STRIDE];
            for (c, out_rows) in out_item.chunks_mut(step * MC * p_total).enumerate() {
                let t = c * step;
                let pair = out_rows.len() > MC * p_total;
                for (pt, bases) in tiles.iter().enumerate() {
                    let (q, n) = (p0 + pt * NP, NP.min(count - pt * NP));
                    for (i, &(c0, taps, src)) in sources.iter().enumerate() {
                        let panel0 = &cw.a.panel(t)[c0 * MC..];
                        if pair {
                            kernel.tile2(panel0, &cw.a.panel(t + 1)[c0 * MC..], src, bases, taps, &mut acc, ACC_STRIDE, i > 0, n);
                        } else {
                            kernel.tile_into(panel0, src, bases, taps, &mut acc, ACC_STRIDE, i > 0);
                        }
                    }
                    if pair {
                        let (rows0, rows1) = out_rows.split_at_mut(MC * p_total);
                        epi.store(kernel, rows0, t, &acc, q, n);
                        epi.store(kernel, rows1, t + 1, &acc[MC..], q, n);
                    } else {
                        epi.store(kernel, out_rows, t, &acc, q, n);
                    }
                }
            }
        }
    }
}

/// At most this many output channels (conv_out's 1 to 4), a stride-1 conv runs as one axpy per
/// (output channel, tap) along the whole band (`few_channels_band`): the GEMM's register tile
/// would compute MC channels and keep a few, and Winograd's transforms would cost more than its
/// multiplies save (conv_out took 2 % of the bundled model's forward as Winograd).
pub(super) const FEW_CHANNELS: usize = 4;

fn few_channels(co: usize, stride: usize) -> bool {
    co <= FEW_CHANNELS && stride == 1
}

/// One band of a `few_channels` conv. At stride 1, output pixel (oy, ox) of the band reads tap
/// (c, ky, kx) at oy·wp + ox + its offset, so each tap is one contiguous multiply-add over the
/// band's positions i = oy·wp + ox (the k − 1 positions past each row's end are computed and
/// dropped). `acc` is scratch: a row of positions per output channel.
fn few_channels_band(
    cw: &ConvWeights,
    sources: &[(usize, &Taps, &[f32])],
    wp: usize,
    (p0, rows, ow): (usize, usize, usize),
    acc: &mut Vec<f32>,
    epi: &Epilogue,
    out_item: &mut [f32],
) {
    let span = (rows - 1) * wp + ow;
    acc.resize(cw.co * span, 0.0);
    for (o, acc) in acc.chunks_exact_mut(span).enumerate() {
        acc.fill(0.0);
        let panel = cw.a.panel(o / MC);
        for &(c0, taps, src) in sources {
            for (kk, &off) in taps.offsets().iter().enumerate() {
                axpy(acc, panel[(c0 + kk) * MC + o % MC], &src[off..][..span]);
            }
        }
        for r in 0..rows {
            let p = p0 + r * ow;
            epi.finish(o, p, &acc[r * wp..][..ow], &mut out_item[o * epi.pixels + p..][..ow]);
        }
    }
}

/// acc += w · x.
fn axpy(acc: &mut [f32], w: f32, x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: avx2 and fma were detected on this CPU.
        return unsafe { axpy_avx2(acc, w, x) };
    }
    axpy_body(acc, w, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn axpy_avx2(acc: &mut [f32], w: f32, x: &[f32]) {
    axpy_body(acc, w, x)
}

#[inline(always)]
fn axpy_body(acc: &mut [f32], w: f32, x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += w * v;
    }
}

/// A Winograd conv's buffers, reused across its items and bands.
#[derive(Default)]
struct WinogradScratch {
    /// One channel's padded plane of a band, as its quarters (`Bands::fill_channel`).
    plane: Vec<f32>,
    normed: Vec<f32>,
    v: Vec<f32>,
    m: Vec<f32>,
    h: Vec<f32>,
    rows: Vec<f32>,
}

/// One item of a Winograd conv, band by band of tile rows (`winograd`).
#[allow(clippy::too_many_arguments)]
fn winograd_item(
    kernel: Kernel,
    u: &WinogradWeights,
    (bands, tw, trows): &(Bands, usize, usize),
    s: &mut WinogradScratch,
    xs: &[&[f32]],
    affine: Option<&[(f32, f32)]>,
    epi: &Epilogue,
    out_item: &mut [f32],
    (oh, ow): (usize, usize),
) {
    let (tw, th) = (*tw, oh.div_ceil(2));
    winograd::grow(&mut s.rows, 4 * tw * epi.co);
    let channels: Vec<&[f32]> = xs.iter().flat_map(|part| part.chunks_exact(bands.h * bands.w)).collect();
    for ty0 in (0..th).step_by(*trows) {
        let tr = (*trows).min(th - ty0);
        let read = bands.rows_read(2 * ty0, 2 * tr);
        let band = winograd::Band { plane: bands.plane, ci: bands.ci, co: epi.co, tw, trows: tr };
        // Each channel's padded quarters are made just before their transform, in one plane of
        // scratch that stays in L1 (a whole band's went through L2 between the two).
        let normed = &mut s.normed;
        let fill = |c: usize, plane: &mut [f32]| bands.fill_channel(plane, normed, channels[c], affine.map(|a| a[c]), 2 * ty0, read, true);
        winograd::transform_and_multiply(kernel, u, &band, fill, &mut s.plane, &mut s.v, &mut s.m, &mut s.h);
        #[cfg(target_arch = "x86_64")]
        if kernel.avx2() {
            // SAFETY: avx2 and fma were detected on this CPU (`Kernel::avx2`).
            unsafe { winograd_outputs_avx2(&s.m, &band, ty0, epi, out_item, (oh, ow)) };
            continue;
        }
        for r in 0..tr {
            winograd::output_rows(&s.m, &band, r, &mut s.rows);
            for o in 0..epi.co {
                for dy in 0..2 {
                    let oy = 2 * (ty0 + r) + dy;
                    if oy < oh {
                        let p0 = oy * ow;
                        let src = &s.rows[(o * 2 + dy) * 2 * tw..][..ow];
                        epi.finish(o, p0, src, &mut out_item[o * epi.pixels + p0..][..ow]);
                    }
                }
            }
        }
    }
}

/// The outputs of a Winograd band, its epilogue applied, stored straight into the output: blocks
/// of 4 tiles × 8 channels (`winograd::output_block_avx2`), each row of a block one masked store.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn winograd_outputs_avx2(m: &[f32], band: &winograd::Band, ty0: usize, epi: &Epilogue, out_item: &mut [f32], (oh, ow): (usize, usize)) {
    for r in 0..band.trows {
        for x0 in (0..band.tw).step_by(4) {
            let n = (ow - 2 * x0).min(8);
            for o0 in (0..epi.co).step_by(8) {
                let rows = winograd::output_block_avx2(m, band, r, x0, o0);
                for (dy, row) in rows.iter().enumerate() {
                    let oy = 2 * (ty0 + r) + dy;
                    if oy < oh {
                        for (l, &v) in row.iter().enumerate().take(epi.co - o0) {
                            epi.finish8(o0 + l, o0 + l, oy * ow + 2 * x0, n, v, out_item);
                        }
                    }
                }
            }
        }
    }
}
