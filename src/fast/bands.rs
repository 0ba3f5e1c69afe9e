//! Where a conv reads: its input zero-padded (and upsampled, normalised, concatenated) one band of
//! output rows at a time, and the taps' offsets into a band (the direct GEMM's and Winograd's).

use super::gemm::{Taps, NP};
use super::norm;
use crate::model::ConvSpec;

/// Where a conv reads. Its input is zero-padded (and upsampled) one band of output rows at a time
/// into a buffer of `ci` planes of `band_hp` × `wp`; tap (ci, ky, kx) of a pixel is at
/// ci·plane + ky·wp + kx past the pixel's base. A conv without padding or upsampling reads its
/// input as it is, in one band.
pub(super) struct Bands {
    pub(super) taps: Taps,
    /// Output rows per band (the last band may have fewer).
    pub(super) rows: usize,
    pub(super) direct: bool,
    pub(super) ci: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) up: usize,
    pub(super) k: usize,
    pub(super) stride: usize,
    pub(super) pad_t: usize,
    pub(super) pad_l: usize,
    pub(super) wp: usize,
    pub(super) plane: usize,
    pub(super) ow: usize,
}

impl Bands {
    /// `copied`: the input is normalised, or a 3×3 conv's comes in parts, so even an unpadded conv
    /// reads a copy (a 1×1 conv over parts reads each part in place: `Direct::parts`).
    pub(super) fn new(
        (ci, k): (usize, usize),
        (h, w): (usize, usize),
        spec: ConvSpec,
        (oh, ow): (usize, usize),
        band_bytes: usize,
        copied: bool,
    ) -> Self {
        let up = if spec.upsample { 2 } else { 1 };
        let wp = w * up + spec.pad[1] + spec.pad[3];
        let direct = up == 1 && spec.pad == [0; 4] && !copied;
        let rows = if direct { oh } else { (band_bytes / (4 * ci * spec.stride * wp).max(1)).clamp(1, oh) };
        Self::with_rows(ci, k, (h, w), spec, ow, rows, direct)
    }

    /// The bands of a Winograd conv (`winograd::fits`): an even number of output rows each, and
    /// padded rows of 2·tw + 2 columns for ⌈ow/2⌉ = tw tiles (one more zero column where ow is
    /// odd). A band's tile rows are sized so that its transformed input and output stay within
    /// `band_bytes`. Returns the bands, tw and the tile rows per band.
    pub(super) fn winograd(
        (ci, co, k): (usize, usize, usize),
        hw: (usize, usize),
        spec: ConvSpec,
        (oh, ow): (usize, usize),
        band_bytes: usize,
    ) -> (Self, usize, usize) {
        let (tw, th) = (ow.div_ceil(2), oh.div_ceil(2));
        let trows = (band_bytes / (4 * 16 * (ci + co) * tw).max(1)).clamp(1, th);
        let spec = ConvSpec { pad: [1, 1, 1, 1 + 2 * tw - ow], ..spec };
        (Self::with_rows(ci, k, hw, spec, ow, 2 * trows, false), tw, trows)
    }

    pub(super) fn with_rows(ci: usize, k: usize, (h, w): (usize, usize), spec: ConvSpec, ow: usize, rows: usize, direct: bool) -> Self {
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
    pub(super) fn buffer(&self) -> Vec<f32> {
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
    pub(super) fn source<'a>(
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
    pub(super) fn rows_read(&self, oy0: usize, rows: usize) -> (usize, usize, usize) {
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
    pub(super) fn fill_channel(
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
    pub(super) fn split_row(&self, plane: &mut [f32], band_rows: usize, r: usize, src_row: Option<&[f32]>) {
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
    pub(super) fn tiles(&self, count: usize) -> Vec<[usize; NP]> {
        let (s, ow, wp) = (self.stride, self.ow, self.wp);
        let bases: Vec<usize> = (0..count).map(|q| (q / ow) * s * wp + (q % ow) * s).collect();
        bases.chunks(NP).map(|c| std::array::from_fn(|j| c[j.min(c.len() - 1)])).collect()
    }
}
