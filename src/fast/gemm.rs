//! The GEMM at the heart of the fast CPU engine: C[MR×NR] tiles accumulated in registers from a
//! packed A panel (weights, MR output channels interleaved per k) and a packed B panel (im2col of the
//! input, NR pixels per k). The microkernel is plain Rust over fixed-size arrays, which LLVM turns
//! into f32x4 (wasm simd128, SSE) or f32x8 (AVX2) code; on x86-64 an AVX2+FMA copy is picked at run
//! time. No crate does this for wasm simd128 today (`gemm` has no wasm SIMD; `matrixmultiply` has no
//! packed-A reuse across calls nor fused epilogues), so it lives here, in ~100 lines.

/// Output channels per register tile.
#[cfg(target_arch = "wasm32")]
pub const MR: usize = 4;
#[cfg(not(target_arch = "wasm32"))]
pub const MR: usize = 6;
/// Pixels per register tile: two 256-bit vectors natively, two v128 in wasm (V8 has 16 xmm).
#[cfg(target_arch = "wasm32")]
pub const NR: usize = 8;
#[cfg(not(target_arch = "wasm32"))]
pub const NR: usize = 16;

/// acc[i][j] = Σ_k a[k·MR + i] · b[k·NR + j] over the panels' common depth.
#[inline(always)]
#[cfg_attr(all(target_arch = "wasm32", target_feature = "relaxed-simd"), allow(dead_code))]
fn microkernel_body<const FMA: bool>(a: &[f32], b: &[f32]) -> [[f32; NR]; MR] {
    let mut c = [[0f32; NR]; MR];
    for (av, bv) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        let av: &[f32; MR] = av.try_into().expect("chunks_exact");
        let bv: &[f32; NR] = bv.try_into().expect("chunks_exact");
        for i in 0..MR {
            for j in 0..NR {
                c[i][j] = if FMA { av[i].mul_add(bv[j], c[i][j]) } else { c[i][j] + av[i] * bv[j] };
            }
        }
    }
    c
}

/// The same over an unpacked B: row k is `b[offsets[k]..][..NR]` (an "indirect" GEMM: the rows are
/// shifted windows of the zero-padded input, so stride-1 convolutions need no im2col copy).
#[inline(always)]
#[cfg_attr(all(target_arch = "wasm32", target_feature = "relaxed-simd"), allow(dead_code))]
fn indirect_body<const FMA: bool>(a: &[f32], b: &[f32], offsets: &[usize]) -> [[f32; NR]; MR] {
    let mut c = [[0f32; NR]; MR];
    for (av, &o) in a.chunks_exact(MR).zip(offsets) {
        let av: &[f32; MR] = av.try_into().expect("chunks_exact");
        let bv: &[f32; NR] = b[o..o + NR].try_into().expect("NR");
        for i in 0..MR {
            for j in 0..NR {
                c[i][j] = if FMA { av[i].mul_add(bv[j], c[i][j]) } else { c[i][j] + av[i] * bv[j] };
            }
        }
    }
    c
}

/// The wasm microkernels of the relaxed-SIMD build (`./build.sh` makes it beside the simd128 one
/// and the page loads it where the browser validates relaxed SIMD): f32x4.relaxed_madd, one fused
/// multiply-add where simd128 needs a multiply and an add. `rows(k)` is B's row k.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
#[inline(always)]
fn relaxed_body<'b>(a: &[f32], depth: usize, rows: impl Fn(usize) -> &'b [f32]) -> [[f32; NR]; MR] {
    use core::arch::wasm32::{f32x4_relaxed_madd, f32x4_splat, v128, v128_load, v128_store};
    const _: () = assert!(MR == 4 && NR == 8);
    let zero = f32x4_splat(0.0);
    let mut c: [[v128; 2]; MR] = [[zero; 2]; MR];
    for (k, av) in a.chunks_exact(MR).take(depth).enumerate() {
        let b = &rows(k)[..NR];
        // SAFETY: b has NR = 8 floats; unaligned v128 loads are allowed in wasm.
        let (b0, b1) = unsafe { (v128_load(b.as_ptr() as *const v128), v128_load(b.as_ptr().add(4) as *const v128)) };
        for i in 0..MR {
            let ai = f32x4_splat(av[i]);
            c[i][0] = f32x4_relaxed_madd(ai, b0, c[i][0]);
            c[i][1] = f32x4_relaxed_madd(ai, b1, c[i][1]);
        }
    }
    let mut out = [[0f32; NR]; MR];
    for i in 0..MR {
        // SAFETY: out[i] has NR = 8 floats.
        unsafe {
            v128_store(out[i].as_mut_ptr() as *mut v128, c[i][0]);
            v128_store(out[i].as_mut_ptr().add(4) as *mut v128, c[i][1]);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn microkernel_avx2(a: &[f32], b: &[f32]) -> [[f32; NR]; MR] {
    microkernel_body::<true>(a, b)
}

fn microkernel_portable(a: &[f32], b: &[f32]) -> [[f32; NR]; MR] {
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    return relaxed_body(a, a.len() / MR, |k| &b[k * NR..]);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
    microkernel_body::<false>(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn indirect_avx2(a: &[f32], b: &[f32], offsets: &[usize]) -> [[f32; NR]; MR] {
    indirect_body::<true>(a, b, offsets)
}

fn indirect_portable(a: &[f32], b: &[f32], offsets: &[usize]) -> [[f32; NR]; MR] {
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    return relaxed_body(a, offsets.len(), |k| &b[offsets[k]..]);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
    indirect_body::<false>(a, b, offsets)
}

/// The microkernel this CPU runs best.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    avx2: bool,
}

impl Kernel {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        Kernel { avx2 }
    }

    /// Which variant runs, for reports.
    pub fn name(&self) -> &'static str {
        if self.avx2 {
            "avx2+fma 6x16"
        } else if cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd")) {
            "wasm relaxed-simd fma 4x8"
        } else if cfg!(target_arch = "wasm32") {
            "wasm simd128 4x8"
        } else {
            "portable 6x16"
        }
    }

    #[inline]
    pub fn tile(&self, a: &[f32], b: &[f32]) -> [[f32; NR]; MR] {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: avx2 and fma were detected on this CPU.
            return unsafe { microkernel_avx2(a, b) };
        }
        microkernel_portable(a, b)
    }

    /// One MR×NR tile of A·B with B's rows at `b[base + offsets[k]..][..NR]` (`b` pre-sliced at base).
    #[inline]
    pub fn tile_indirect(&self, a: &[f32], b: &[f32], offsets: &[usize]) -> [[f32; NR]; MR] {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: avx2 and fma were detected on this CPU.
            return unsafe { indirect_avx2(a, b, offsets) };
        }
        indirect_portable(a, b, offsets)
    }
}

/// Weights [Co, K] packed once into ⌈Co/MR⌉ panels of K×MR (k-major, zero rows past Co).
#[derive(Clone, Debug)]
pub struct PackedA {
    pub rows: usize,
    pub depth: usize,
    pub data: Vec<f32>,
}

impl PackedA {
    pub fn pack(w: &[f32], rows: usize, depth: usize) -> Self {
        let tiles = rows.div_ceil(MR);
        let mut data = vec![0.0; tiles * depth * MR];
        for t in 0..tiles {
            let panel = &mut data[t * depth * MR..][..depth * MR];
            for i in 0..MR.min(rows - t * MR) {
                let row = &w[(t * MR + i) * depth..][..depth];
                for (k, &v) in row.iter().enumerate() {
                    panel[k * MR + i] = v;
                }
            }
        }
        PackedA { rows, depth, data }
    }

    pub fn panel(&self, tile: usize) -> &[f32] {
        &self.data[tile * self.depth * MR..][..self.depth * MR]
    }

    pub fn tiles(&self) -> usize {
        self.rows.div_ceil(MR)
    }
}
