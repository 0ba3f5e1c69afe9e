//! The GEMM at the heart of the fast CPU engine, written for convolutions: a tile of MC output
//! channels × NP output pixels is accumulated in registers. Each step k (one tap (ci, ky, kx))
//! loads MC weights as vectors from a packed panel (`PackedA`: MC channels contiguous per k) and
//! broadcasts one input value per pixel from `b[bases[j] + offsets[k]]`: pixel j's own window into
//! the zero-padded input. Vectors run along channels, so pixels need not be contiguous: a tile
//! may span output rows, and no padding column or im2col copy is ever computed (an "indirect" GEMM
//! with one base per pixel).
//!
//! The microkernel is plain Rust over fixed-size arrays, which LLVM turns into f32x8 (AVX2, picked
//! at run time on x86-64) or f32x4 (wasm simd128, SSE) code; the relaxed-SIMD wasm build has its
//! own copy with `f32x4_relaxed_madd`. No crate does this for wasm simd128 today (`gemm` has no
//! wasm SIMD; `matrixmultiply` has no packed-A reuse across calls nor fused epilogues).

/// Output channels per register tile: two 256-bit vectors natively, two v128 in wasm.
#[cfg(target_arch = "wasm32")]
pub const MC: usize = 8;
#[cfg(not(target_arch = "wasm32"))]
pub const MC: usize = 16;
/// Output pixels per register tile: MC/lanes × NP accumulators (12 natively of 16 ymm; 8 in wasm,
/// where V8 keeps a scratch register and simd128's multiply-add needs a temporary).
#[cfg(target_arch = "wasm32")]
pub const NP: usize = 4;
#[cfg(not(target_arch = "wasm32"))]
pub const NP: usize = 6;

/// acc[j][i] = Σ_k a[k·MC + i] · b[bases[j] + offsets[k]].
///
/// # Safety
/// Every `bases[j] + offsets[k]` is in bounds of `b` and `a.len() ≥ offsets.len() · MC`.
#[inline(always)]
#[cfg_attr(all(target_arch = "wasm32", target_feature = "relaxed-simd"), allow(dead_code))]
unsafe fn tile_body<const FMA: bool>(a: &[f32], b: &[f32], bases: &[usize; NP], offsets: &[usize]) -> [[f32; MC]; NP] {
    let mut c = [[0f32; MC]; NP];
    // One pointer per pixel, so each load is [pointer + offset·4] (indexing b by bases[j] + o
    // costs an extra add per pixel and step).
    // SAFETY: the caller's bound (bases[j] ≤ b.len()).
    let px: [*const f32; NP] = std::array::from_fn(|j| unsafe { b.as_ptr().add(bases[j]) });
    for (av, &o) in a.chunks_exact(MC).zip(offsets) {
        let av: &[f32; MC] = av.try_into().expect("chunks_exact");
        for j in 0..NP {
            // SAFETY: the caller's bound.
            let bj = unsafe { *px[j].add(o) };
            for i in 0..MC {
                c[j][i] = if FMA { bj.mul_add(av[i], c[j][i]) } else { c[j][i] + bj * av[i] };
            }
        }
    }
    c
}

/// The relaxed-SIMD wasm build's microkernel (`./build.sh` makes it beside the simd128 one and
/// the page loads it where the browser validates relaxed SIMD): f32x4.relaxed_madd, one fused
/// multiply-add where simd128 needs a multiply and an add.
///
/// # Safety
/// As `tile_body`.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
#[inline(always)]
unsafe fn relaxed_body(a: &[f32], b: &[f32], bases: &[usize; NP], offsets: &[usize]) -> [[f32; MC]; NP] {
    use core::arch::wasm32::{f32x4_relaxed_madd, f32x4_splat, v128, v128_load, v128_store};
    const _: () = assert!(MC == 8);
    let zero = f32x4_splat(0.0);
    let mut c: [[v128; 2]; NP] = [[zero; 2]; NP];
    // SAFETY: the caller's bound (bases[j] ≤ b.len()).
    let px: [*const f32; NP] = std::array::from_fn(|j| unsafe { b.as_ptr().add(bases[j]) });
    for (av, &o) in a.chunks_exact(MC).zip(offsets) {
        // SAFETY: av has MC = 8 floats; unaligned v128 loads are allowed in wasm.
        let (a0, a1) = unsafe { (v128_load(av.as_ptr() as *const v128), v128_load(av.as_ptr().add(4) as *const v128)) };
        for j in 0..NP {
            // SAFETY: the caller's bound.
            let bj = f32x4_splat(unsafe { *px[j].add(o) });
            c[j][0] = f32x4_relaxed_madd(a0, bj, c[j][0]);
            c[j][1] = f32x4_relaxed_madd(a1, bj, c[j][1]);
        }
    }
    let mut out = [[0f32; MC]; NP];
    for j in 0..NP {
        // SAFETY: out[j] has MC = 8 floats.
        unsafe {
            v128_store(out[j].as_mut_ptr() as *mut v128, c[j][0]);
            v128_store(out[j].as_mut_ptr().add(4) as *mut v128, c[j][1]);
        }
    }
    out
}

/// # Safety
/// As `tile_body`, and the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(a: &[f32], b: &[f32], bases: &[usize; NP], offsets: &[usize]) -> [[f32; MC]; NP] {
    unsafe { tile_body::<true>(a, b, bases, offsets) }
}

/// Two tiles at once, the channels of panels `a0` and `a1` (MC = 16 each: one zmm) for the same
/// NP pixels: per step two weight loads and NP broadcasts feed 2·NP 512-bit FMAs, twice the
/// multiply-adds per load of the AVX2 tile (whose loads and FMAs are already balanced). Row j of
/// panel h's tile goes to dst[j·stride + h·MC..][..MC], added to what is there where `accumulate`
/// (stored straight from the registers: returned by value, the 768 bytes of accumulators were
/// copied twice more, through `memmove`).
///
/// Only the first P pixels are computed and stored (a band's last tile of 1 to 4 pixels runs
/// P = 2 or 4: the repeats of its last pixel were 10 % of the multiply-adds of the 7 × 7 and
/// 14 × 14 Winograd GEMMs, whose 16 and 49 tiles fill 3 and 9 tiles of 6).
///
/// # Safety
/// As `tile_body` for both panels, (P − 1)·stride + 2·MC ≤ dst.len(), and the CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile2_avx512<const P: usize>(
    a0: &[f32],
    a1: &[f32],
    b: &[f32],
    bases: &[usize; NP],
    offsets: &[usize],
    dst: &mut [f32],
    stride: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    const { assert!(MC == 16 && P <= NP) };
    // SAFETY: the caller's bound (bases[j] ≤ b.len()).
    let px: [*const f32; P] = std::array::from_fn(|j| unsafe { b.as_ptr().add(bases[j]) });
    let (mut c0, mut c1) = ([_mm512_setzero_ps(); P], [_mm512_setzero_ps(); P]);
    for (k, &o) in offsets.iter().enumerate() {
        // SAFETY: both panels hold offsets.len() · MC floats (the caller's bound).
        let (w0, w1) = unsafe { (_mm512_loadu_ps(a0.as_ptr().add(k * MC)), _mm512_loadu_ps(a1.as_ptr().add(k * MC))) };
        for j in 0..P {
            // SAFETY: the caller's bound.
            let bj = _mm512_set1_ps(unsafe { *px[j].add(o) });
            c0[j] = _mm512_fmadd_ps(w0, bj, c0[j]);
            c1[j] = _mm512_fmadd_ps(w1, bj, c1[j]);
        }
    }
    for j in 0..P {
        // SAFETY: j·stride + 2·MC ≤ dst.len() (the caller's bound).
        unsafe {
            let (d0, d1) = (dst.as_mut_ptr().add(j * stride), dst.as_mut_ptr().add(j * stride + MC));
            if accumulate {
                c0[j] = _mm512_add_ps(c0[j], _mm512_loadu_ps(d0));
                c1[j] = _mm512_add_ps(c1[j], _mm512_loadu_ps(d1));
            }
            _mm512_storeu_ps(d0, c0[j]);
            _mm512_storeu_ps(d1, c1[j]);
        }
    }
}

/// # Safety
/// As `tile_body`.
unsafe fn tile_portable(a: &[f32], b: &[f32], bases: &[usize; NP], offsets: &[usize]) -> [[f32; MC]; NP] {
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    return unsafe { relaxed_body(a, b, bases, offsets) };
    #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
    unsafe {
        tile_body::<false>(a, b, bases, offsets)
    }
}

/// The taps of a convolution: where each k of the GEMM reads, relative to a pixel's base.
#[derive(Clone, Debug)]
pub struct Taps {
    offsets: Vec<usize>,
    /// The largest offset: the microkernel's bound check is one comparison per pixel.
    max: usize,
}

impl Taps {
    pub fn new(offsets: Vec<usize>) -> Self {
        let max = offsets.iter().copied().max().unwrap_or(0);
        Taps { offsets, max }
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

/// The microkernels, best first. All share the packing (MC channels per panel) and the tile
/// (MC × NP), so they are interchangeable per call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// x86-64 with AVX-512F (and AVX2 + FMA): pairs of tiles (`Kernel::tile2`), single tiles as `Avx2`.
    Avx512,
    /// x86-64 with AVX2 + FMA.
    Avx2,
    /// Whatever the target gives plain Rust: wasm simd128 or relaxed SIMD, SSE2, NEON.
    Portable,
}

/// The microkernel a conv runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel {
    variant: Variant,
}

impl Kernel {
    /// The best kernel this CPU runs.
    pub fn detect() -> Self {
        Self::available()[0]
    }

    /// Every kernel this CPU runs, best first (tests check each against the reference).
    pub fn available() -> Vec<Self> {
        #[cfg(target_arch = "x86_64")]
        let (avx2, avx512) = {
            let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
            (avx2, avx2 && std::arch::is_x86_feature_detected!("avx512f"))
        };
        #[cfg(not(target_arch = "x86_64"))]
        let (avx2, avx512) = (false, false);
        let with = |on: bool, variant| on.then_some(Kernel { variant });
        [with(avx512, Variant::Avx512), with(avx2, Variant::Avx2), Some(Kernel { variant: Variant::Portable })]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Whether this CPU runs the AVX2 + FMA kernels (the conv's epilogue has one too).
    pub fn avx2(&self) -> bool {
        self.variant != Variant::Portable
    }

    /// Which variant runs, for reports.
    /// The short name `DDIM_REQUIRE_KERNELS` lists (the test suites' check): avx512, avx2, portable.
    pub fn id(&self) -> &'static str {
        match self.variant {
            Variant::Avx512 => "avx512",
            Variant::Avx2 => "avx2",
            Variant::Portable => "portable",
        }
    }

    pub fn name(&self) -> &'static str {
        match self.variant {
            Variant::Avx512 => "avx512f 32x6, avx2+fma 16x6 for a lone tile",
            Variant::Avx2 => "avx2+fma 16x6",
            Variant::Portable if cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd")) => "wasm relaxed-simd fma 8x4",
            Variant::Portable if cfg!(target_arch = "wasm32") => "wasm simd128 8x4",
            Variant::Portable => "portable 16x6",
        }
    }

    /// One tile: acc[j][i] = Σ_k panel[k·MC + i] · b[bases[j] + taps[k]].
    #[inline]
    pub fn tile(&self, panel: &[f32], b: &[f32], bases: &[usize; NP], taps: &Taps) -> [[f32; MC]; NP] {
        check_bounds(&[panel], b, bases, taps);
        #[cfg(target_arch = "x86_64")]
        match self.variant {
            // SAFETY: bounds checked above; avx2 and fma were detected on this CPU.
            Variant::Avx2 | Variant::Avx512 => return unsafe { tile_avx2(panel, b, bases, &taps.offsets) },
            Variant::Portable => {}
        }
        // SAFETY: bounds checked above.
        unsafe { tile_portable(panel, b, bases, &taps.offsets) }
    }

    /// Whether `tile2` computes two tiles in one pass (else it runs `tile` twice).
    pub fn pairs(&self) -> bool {
        self.variant == Variant::Avx512
    }

    /// `tile` for panels `p0` and `p1` over the same pixels, in one pass where `pairs`: row j of
    /// panel h's tile goes to dst[j·stride + h·MC..][..MC], added to what is there where
    /// `accumulate`. Rows from `n` (the pixels the caller keeps) on may be left as they were.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn tile2(
        &self,
        p0: &[f32],
        p1: &[f32],
        b: &[f32],
        bases: &[usize; NP],
        taps: &Taps,
        dst: &mut [f32],
        stride: usize,
        accumulate: bool,
        n: usize,
    ) {
        assert!(stride >= 2 * MC && (NP - 1) * stride + 2 * MC <= dst.len(), "conv tile store out of bounds");
        #[cfg(target_arch = "x86_64")]
        if self.variant == Variant::Avx512 {
            check_bounds(&[p0, p1], b, bases, taps);
            let o = &taps.offsets;
            // SAFETY: bounds checked above; avx512f was detected on this CPU.
            return unsafe {
                match n {
                    0..=2 => tile2_avx512::<2>(p0, p1, b, bases, o, dst, stride, accumulate),
                    3..=4 => tile2_avx512::<4>(p0, p1, b, bases, o, dst, stride, accumulate),
                    _ => tile2_avx512::<NP>(p0, p1, b, bases, o, dst, stride, accumulate),
                }
            };
        }
        let _ = n;
        for (h, p) in [p0, p1].into_iter().enumerate() {
            self.tile_into(p, b, bases, taps, &mut dst[h * MC..], stride, accumulate);
        }
    }

    /// `tile`, row j stored at dst[j·stride..][..MC] (added to what is there where `accumulate`).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn tile_into(&self, panel: &[f32], b: &[f32], bases: &[usize; NP], taps: &Taps, dst: &mut [f32], stride: usize, accumulate: bool) {
        let acc = self.tile(panel, b, bases, taps);
        for (j, a) in acc.iter().enumerate() {
            let row: &mut [f32; MC] = (&mut dst[j * stride..][..MC]).try_into().expect("MC");
            if accumulate {
                (0..MC).for_each(|i| row[i] += a[i]);
            } else {
                *row = *a;
            }
        }
    }
}

/// The microkernels' bound: every panel holds a weight vector per tap, and every tap of every
/// pixel is inside `b` (one comparison per pixel, against the largest offset).
fn check_bounds(panels: &[&[f32]], b: &[f32], bases: &[usize; NP], taps: &Taps) {
    let ok = panels.iter().all(|p| p.len() >= taps.len() * MC) && bases.iter().all(|&o| o + taps.max < b.len());
    assert!(ok, "conv tile out of bounds");
}

/// Weights [Co, K] packed once into ⌈Co/MC⌉ panels of K×MC (k-major, zero rows past Co).
#[derive(Clone, Debug)]
pub struct PackedA {
    pub rows: usize,
    pub depth: usize,
    pub data: Vec<f32>,
}

impl PackedA {
    pub fn pack(w: &[f32], rows: usize, depth: usize) -> Self {
        let tiles = rows.div_ceil(MC);
        let mut data = vec![0.0; tiles * depth * MC];
        for t in 0..tiles {
            let panel = &mut data[t * depth * MC..][..depth * MC];
            for i in 0..MC.min(rows - t * MC) {
                let row = &w[(t * MC + i) * depth..][..depth];
                for (k, &v) in row.iter().enumerate() {
                    panel[k * MC + i] = v;
                }
            }
        }
        PackedA { rows, depth, data }
    }

    pub fn panel(&self, tile: usize) -> &[f32] {
        &self.data[tile * self.depth * MC..][..self.depth * MC]
    }

    pub fn tiles(&self) -> usize {
        self.rows.div_ceil(MC)
    }
}
