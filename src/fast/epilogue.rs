//! A conv's epilogue: bias, the per-channel time-embedding add, the residual and the output scale,
//! fused into the store of its outputs (the direct GEMM's tiles, the Winograd output transform's
//! blocks), and the 8×8 register transpose the vector stores use.

use super::gemm::{Kernel, MC, NP};

/// A pixel tile's accumulators are stored two channel tiles per row (`Kernel::tile2`).
pub(super) const ACC_STRIDE: usize = 2 * MC;

/// What is added to every output and how it is stored.
pub(super) struct Epilogue<'a> {
    pub(super) bias: &'a [f32],
    /// chan_add[n, co] of this item, if any.
    pub(super) add: Option<&'a [f32]>,
    /// The residual [Co, P] of this item, if any.
    pub(super) residual: Option<&'a [f32]>,
    pub(super) out_scale: f32,
    pub(super) co: usize,
    pub(super) pixels: usize,
}

impl Epilogue<'_> {
    /// dst[j] = (src[j] + bias + add + residual) / out_scale for pixels p0.. of channel o.
    pub(super) fn finish(&self, o: usize, p0: usize, src: &[f32], dst: &mut [f32]) {
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
    pub(super) fn store(&self, kernel: Kernel, rows: &mut [f32], t: usize, acc: &[f32], p0: usize, n: usize) {
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
    pub(super) fn store_avx2(&self, rows: &mut [f32], t: usize, acc: &[f32], p0: usize, n: usize) {
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
    pub(super) fn finish8(&self, o: usize, row: usize, p0: usize, n: usize, v: std::arch::x86_64::__m256, dst: &mut [f32]) {
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
    pub(super) fn store_scalar(&self, rows: &mut [f32], t: usize, acc: &[f32], p0: usize, n: usize) {
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
