//! Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional
//! Neural Networks", 2016) for the stride-1, pad-1 3×3 convs, which carry nearly all of a U-Net's
//! multiply-adds. Each 2×2 block of output pixels (a "tile") is Aᵀ[U ⊙ (Bᵀ d B)]A over its 4×4
//! input patch d, with U = G g Gᵀ the transformed weights: the GEMM does 16 multiply-adds per
//! tile and (ci, co) where the direct conv does 36, 2.25× fewer.
//!
//! Per band of tile rows:
//! - channel by channel, its padded (normalised, upsampled) input plane is made as for the direct
//!   conv (`Bands::fill_channel`) and the input transform takes it to V[pos][c][tile], pos being
//!   one of the 16 entries of Bᵀ d B (one plane of scratch, in L1 between the two);
//! - 16 GEMMs, one per pos, M[pos] = U[pos] · V[pos], run on the direct conv's microkernel
//!   (`Kernel::tile`, with tiles as its "pixels" and input channels as its taps);
//! - the output transform takes M back to 2×2 outputs, and the conv's epilogue adds bias, time
//!   embedding and residual.
//!
//! The transforms run along rows of tiles on contiguous data (the even and odd columns of each
//! padded row are split first), so they vectorise; they cost O(ci + co) per tile against the
//! GEMM's O(ci · co). The extra roundings of the transforms stay within the engine's tolerance
//! (tests/op_cases: 1e-5 × max|reference|).

use super::bands::Bands;
use super::epilogue::Epilogue;
use super::gemm::{Kernel, PackedA, Taps, MC, NP};
use crate::model::ConvSpec;

/// Weights are transformed (16/9 of their size) only where ci · co is at most this: the
/// high-resolution levels of a U-Net, which carry its multiply-adds, have the fewest channels.
/// Memory decides the bound: with 128 × 128 convs included, ddpm-celebahq-256's peak grew by
/// 58 MB (668 → 726 MB natively, more than its 16 MB of U), past what its browser memory goal
/// leaves, so its convs (128 channels and up) stay direct.
pub const MAX_CHANNEL_PAIRS: usize = 64 * 128;

/// The convs F(2×2, 3×3) computes here: 3×3, stride 1, one pixel of zero padding on each side
/// (an upsampler's conv runs on its 2× band like any other).
pub fn fits(spec: ConvSpec, k: usize) -> bool {
    k == 3 && spec.stride == 1 && spec.pad == [1; 4]
}

/// At most this many output channels (conv_out's 1 to 4), a stride-1 conv runs as one axpy per
/// (output channel, tap) along the whole band (`conv::few_channels_band`): the GEMM's register tile
/// would compute MC channels and keep a few, and Winograd's transforms would cost more than its
/// multiplies save (conv_out took 2 % of the bundled model's forward as Winograd).
pub(super) const FEW_CHANNELS: usize = 4;

/// Whether a 3×3 weight [co, ci] is worth transforming: at most `MAX_CHANNEL_PAIRS`, enough
/// input channels that the GEMM's depth (ci) outweighs the transforms (conv_in's 1 to 3 channels
/// ran 2× slower as Winograd), and more output channels than a conv runs as axpys
/// (`FEW_CHANNELS`: conv_out).
pub fn worth_it(co: usize, ci: usize) -> bool {
    ci >= 8 && co > FEW_CHANNELS && co * ci <= MAX_CHANNEL_PAIRS
}

/// U[pos] = (G g Gᵀ)[pos] of every (co, ci), packed for the GEMM as one [co, ci] matrix per pos.
#[derive(Clone, Debug)]
pub struct WinogradWeights {
    pub u: Vec<PackedA>,
}

impl WinogradWeights {
    /// `w`: [co, ci, 3, 3]. Each U = G g Gᵀ is written straight into its place in the 16 packed
    /// matrices, with G's rows (1, 0, 0), ½(1, 1, 1), ½(1, −1, 1), (0, 0, 1) written out: in the
    /// browser this runs on a worker's cold (baseline-compiled) code before its first step, where
    /// a generic matrix product took most of the worker's load time.
    pub fn pack(w: &[f32], co: usize, ci: usize) -> Self {
        let mut u: Vec<PackedA> = (0..16).map(|_| PackedA::zeroed(co, ci)).collect();
        for o in 0..co {
            for i in 0..ci {
                for (pos, v) in transform_weight(&w[(o * ci + i) * 9..][..9]).into_iter().enumerate() {
                    u[pos].set(o, i, v);
                }
            }
        }
        WinogradWeights { u }
    }
}

/// U = G g Gᵀ of one 3×3 kernel g (row-major), as its 16 entries U[pos], pos = 4·row + column.
/// Also the GPU's (`gpu::weights::pack_winograd_weight`).
#[inline(always)]
pub fn transform_weight(g: &[f32]) -> [f32; 16] {
    let g_rows = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    // G g: 4 rows of 3, column by column.
    let cols = [g_rows(g[0], g[3], g[6]), g_rows(g[1], g[4], g[7]), g_rows(g[2], g[5], g[8])];
    let mut u = [0.0; 16];
    for a in 0..4 {
        u[4 * a..][..4].copy_from_slice(&g_rows(cols[0][a], cols[1][a], cols[2][a]));
    }
    u
}

/// One band of tile rows: its geometry and scratch.
pub struct Band {
    /// Floats in a channel's padded input: (2·trows + 2) rows × wp = 2·tw + 2 columns, as its
    /// four quarters q = 2·(row parity) + column parity, each of trows + 1 rows × tw + 1
    /// (`conv::Bands::split_row`).
    pub plane: usize,
    pub ci: usize,
    pub co: usize,
    /// Tiles per row and tile rows in this band.
    pub tw: usize,
    pub trows: usize,
}

impl Band {
    fn tiles(&self) -> usize {
        self.tw * self.trows
    }

    /// V's entries per (pos, channel): tile rows of tw + 1.
    fn stride(&self) -> usize {
        self.trows * (self.tw + 1)
    }

    /// Tiles rounded up to whole GEMM tiles: M's rows per pos (the GEMM stores whole tiles).
    fn tiles_padded(&self) -> usize {
        self.tiles().next_multiple_of(NP)
    }

    fn co_padded(&self) -> usize {
        self.co.next_multiple_of(MC)
    }
}

/// M[pos][tile][co] of one band (co padded to whole register tiles and tiles to whole GEMM tiles,
/// so the GEMM stores its accumulators straight into M as whole vectors): channel by channel,
/// `fill(c, plane)` makes channel c's padded input quarters and the input transform takes them
/// to V; then the 16 GEMMs. `plane`, `v`, `m` and `h` are scratch.
#[allow(clippy::too_many_arguments)]
pub fn transform_and_multiply(
    kernel: Kernel,
    wino: &WinogradWeights,
    band: &Band,
    mut fill: impl FnMut(usize, &mut [f32]),
    plane: &mut Vec<f32>,
    v: &mut Vec<f32>,
    m: &mut Vec<f32>,
    h: &mut Vec<f32>,
) {
    let (t, tp, cp) = (band.tiles(), band.tiles_padded(), band.co_padded());
    let vt = band.stride();
    grow(plane, band.plane);
    grow(v, 16 * band.ci * vt);
    grow(m, 16 * tp * cp);
    grow(h, 8 * (band.trows + 1) * (band.tw + 1));
    for c in 0..band.ci {
        let plane = &mut plane[..band.plane];
        fill(c, plane);
        input_transform(band, c, plane, v, h);
    }
    let taps = Taps::new((0..band.ci).map(|c| c * vt).collect());
    // Tile i is at (i / tw)·(tw + 1) + i % tw in V.
    let base = |i: usize| (i / band.tw) * (band.tw + 1) + i % band.tw;
    let bases: Vec<[usize; NP]> = (0..t.div_ceil(NP)).map(|g| std::array::from_fn(|j| base((g * NP + j).min(t - 1)))).collect();
    for (pos, u) in wino.u.iter().enumerate() {
        let vp = &v[pos * band.ci * vt..][..band.ci * vt];
        let mp = &mut m[pos * tp * cp..][..tp * cp];
        let mut ct = 0;
        while ct < u.tiles() {
            // Two channel tiles per pass where the kernel does pairs (`Kernel::pairs`).
            if kernel.pairs() && ct + 1 < u.tiles() {
                let (panel0, panel1) = (u.panel(ct), u.panel(ct + 1));
                for (g, b) in bases.iter().enumerate() {
                    kernel.tile2(panel0, panel1, vp, b, &taps, &mut mp[g * NP * cp + ct * MC..], cp, false, t - g * NP);
                }
                ct += 2;
                continue;
            }
            let panel = u.panel(ct);
            for (g, b) in bases.iter().enumerate() {
                kernel.tile_into(panel, vp, b, &taps, &mut mp[g * NP * cp + ct * MC..], cp, false);
            }
            ct += 1;
        }
    }
}

/// Scratch is grown, never shrunk (and never cleared: every entry read is written first), so a
/// conv after a larger one does not zero what it is about to overwrite.
pub fn grow(buf: &mut Vec<f32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
}

/// V[pos][c][r·(tw + 1) + tx] = (Bᵀ d B)[pos] of the patch of tile (r, tx) in channel c (one
/// unused column per tile row, so every step below is one contiguous loop over the whole band),
/// from the channel's padded plane as its four `quarters`.
fn input_transform(band: &Band, c: usize, quarters: &[f32], v: &mut [f32], h: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: avx2 and fma were detected on this CPU.
        return unsafe { input_transform_avx2(band, c, quarters, v, h) };
    }
    input_transform_body(band, c, quarters, v, h)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn input_transform_avx2(band: &Band, c: usize, quarters: &[f32], v: &mut [f32], h: &mut [f32]) {
    input_transform_body(band, c, quarters, v, h)
}

/// `h` (scratch, 8 quarters): h[parity][b], the horizontal transform (d Bᵀ)[b] of the even or
/// odd padded rows.
#[inline(always)]
fn input_transform_body(band: &Band, c: usize, quarters: &[f32], v: &mut [f32], h: &mut [f32]) {
    let (tw, trows) = (band.tw, band.trows);
    let s = tw + 1;
    // Quarter q = 2·(row parity) + (column parity) of the padded plane: (trows + 1) × (tw + 1).
    let qn = (trows + 1) * s;
    let vt = band.stride();
    let quarters = &quarters[..4 * qn];
    for parity in 0..2 {
        let (e, o) = quarters[2 * parity * qn..][..2 * qn].split_at(qn);
        let hp = &mut h[4 * parity * qn..][..4 * qn];
        let (h0, rest) = hp.split_at_mut(qn);
        let (h1, rest) = rest.split_at_mut(qn);
        let (h2, h3) = rest.split_at_mut(qn);
        let n = qn - 1;
        for f in 0..n {
            h0[f] = e[f] - e[f + 1];
            h1[f] = o[f] + e[f + 1];
            h2[f] = e[f + 1] - o[f];
            h3[f] = o[f] - o[f + 1];
        }
    }
    // Vertical: V[a][b] = (Bᵀ h)[a][b]; patch rows 0 and 2 are even padded rows r and r + 1,
    // rows 1 and 3 odd rows r and r + 1.
    for b in 0..4 {
        let (he, ho) = (&h[b * qn..][..qn], &h[(4 + b) * qn..][..qn]);
        let at = |a: usize| ((4 * a + b) * band.ci + c) * vt;
        let (e0, e1, o0, o1) = (&he[..vt], &he[s..][..vt], &ho[..vt], &ho[s..][..vt]);
        v[at(0)..][..vt].iter_mut().zip(e0.iter().zip(e1)).for_each(|(d, (p, q))| *d = p - q);
        v[at(1)..][..vt].iter_mut().zip(o0.iter().zip(e1)).for_each(|(d, (p, q))| *d = p + q);
        v[at(2)..][..vt].iter_mut().zip(e1.iter().zip(o0)).for_each(|(d, (p, q))| *d = p - q);
        v[at(3)..][..vt].iter_mut().zip(o0.iter().zip(o1)).for_each(|(d, (p, q))| *d = p - q);
    }
}

/// The 2×2 outputs of every output channel over tile row `r` of a band, (Aᵀ M A) of each tile:
/// `rows` holds, per channel, its two rows of 2·tw pixels. (AVX2 CPUs run `output_block_avx2`.)
pub fn output_rows(m: &[f32], band: &Band, r: usize, rows: &mut [f32]) {
    let (tw, tp, cp) = (band.tw, band.tiles_padded(), band.co_padded());
    for x in 0..tw {
        let tile = r * tw + x;
        for o0 in (0..band.co).step_by(OC) {
            let mut mp = [[0f32; OC]; 16];
            for (pos, v) in mp.iter_mut().enumerate() {
                v.copy_from_slice(&m[(pos * tp + tile) * cp + o0..][..OC]);
            }
            // s[y][b] = (Aᵀ M)[y][b], then Y[y][x] = (s A)[y][x], for OC channels at once.
            let (mut s0, mut s1) = ([[0f32; OC]; 4], [[0f32; OC]; 4]);
            for b in 0..4 {
                for l in 0..OC {
                    s0[b][l] = mp[b][l] + mp[4 + b][l] + mp[8 + b][l];
                    s1[b][l] = mp[4 + b][l] - mp[8 + b][l] - mp[12 + b][l];
                }
            }
            let mut y = [[0f32; OC]; 4];
            for l in 0..OC {
                y[0][l] = s0[0][l] + s0[1][l] + s0[2][l];
                y[1][l] = s0[1][l] - s0[2][l] - s0[3][l];
                y[2][l] = s1[0][l] + s1[1][l] + s1[2][l];
                y[3][l] = s1[1][l] - s1[2][l] - s1[3][l];
            }
            for l in 0..OC.min(band.co - o0) {
                let row = &mut rows[(o0 + l) * 4 * tw..][..4 * tw];
                (row[2 * x], row[2 * x + 1]) = (y[0][l], y[1][l]);
                (row[2 * tw + 2 * x], row[2 * tw + 2 * x + 1]) = (y[2][l], y[3][l]);
            }
        }
    }
}

/// (Aᵀ M A) of tiles x0.. x0 + 4 of tile row `r`, channels o0.. o0 + 8, as output pixel rows:
/// `[dy][l]` holds pixels 2·x0.. 2·x0 + 8 of output row dy (of the tile row) of channel o0 + l.
/// The transform runs with channels across the lanes (M's layout), and two 8 × 8 transposes
/// turn its 16 vectors into pixel rows, stored whole by the caller: `output_rows` stored each
/// output as a scalar, and its rows were copied once more by the epilogue. Tiles past the band
/// repeat its last (their outputs are not stored).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn output_block_avx2(m: &[f32], band: &Band, r: usize, x0: usize, o0: usize) -> [[std::arch::x86_64::__m256; 8]; 2] {
    use std::arch::x86_64::*;
    let (t, tp, cp) = (band.tiles(), band.tiles_padded(), band.co_padded());
    assert!(o0 + 8 <= cp && m.len() >= 16 * tp * cp, "Winograd output block out of bounds");
    let mut rows = [[_mm256_setzero_ps(); 8]; 2];
    for j in 0..4 {
        let tile = (r * band.tw + x0 + j).min(t - 1);
        // SAFETY: (pos·tp + tile)·cp + o0 + 8 ≤ 16·tp·cp ≤ m.len() (asserted).
        let ld = |pos: usize| unsafe { _mm256_loadu_ps(m.as_ptr().add((pos * tp + tile) * cp + o0)) };
        // s0[b] = (Aᵀ M)[0][b], s1[b] = (Aᵀ M)[1][b].
        let (mut s0, mut s1) = ([_mm256_setzero_ps(); 4], [_mm256_setzero_ps(); 4]);
        for b in 0..4 {
            let (m0, m1, m2, m3) = (ld(b), ld(4 + b), ld(8 + b), ld(12 + b));
            s0[b] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
            s1[b] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
        }
        for (dy, s) in [s0, s1].iter().enumerate() {
            rows[dy][2 * j] = _mm256_add_ps(_mm256_add_ps(s[0], s[1]), s[2]);
            rows[dy][2 * j + 1] = _mm256_sub_ps(_mm256_sub_ps(s[1], s[2]), s[3]);
        }
    }
    super::epilogue::transpose8(&mut rows[0]);
    super::epilogue::transpose8(&mut rows[1]);
    rows
}

/// Channels per step of the output transform: one vector of them natively, two in wasm.
const OC: usize = 8;

/// Winograd scratch kept from one conv to the next, one per conv running at once (a thread of a
/// batch split takes one and puts it back): fresh buffers of this size come from mmap, and
/// faulting their pages in cost more than the transforms. A pool rather than a thread-local,
/// because a batch split's threads are made per forward and their thread-locals die with them.
static WINOGRAD_SCRATCH: std::sync::Mutex<Vec<WinogradScratch>> = std::sync::Mutex::new(Vec::new());

pub(super) fn take_scratch() -> WinogradScratch {
    WINOGRAD_SCRATCH.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default()
}

/// Gives a conv's scratch back to the pool.
pub(super) fn put_scratch(scratch: WinogradScratch) {
    WINOGRAD_SCRATCH.lock().unwrap_or_else(|p| p.into_inner()).push(scratch);
}

/// A Winograd conv's buffers, reused across its items and bands.
#[derive(Default)]
pub(super) struct WinogradScratch {
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
pub(super) fn conv_item(
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
    grow(&mut s.rows, 4 * tw * epi.co);
    let channels: Vec<&[f32]> = xs.iter().flat_map(|part| part.chunks_exact(bands.h * bands.w)).collect();
    for ty0 in (0..th).step_by(*trows) {
        let tr = (*trows).min(th - ty0);
        let read = bands.rows_read(2 * ty0, 2 * tr);
        let band = Band { plane: bands.plane, ci: bands.ci, co: epi.co, tw, trows: tr };
        // Each channel's padded quarters are made just before their transform, in one plane of
        // scratch that stays in L1 (a whole band's went through L2 between the two).
        let normed = &mut s.normed;
        let fill = |c: usize, plane: &mut [f32]| bands.fill_channel(plane, normed, channels[c], affine.map(|a| a[c]), 2 * ty0, read, true);
        transform_and_multiply(kernel, u, &band, fill, &mut s.plane, &mut s.v, &mut s.m, &mut s.h);
        #[cfg(target_arch = "x86_64")]
        if kernel.avx2() {
            // SAFETY: avx2 and fma were detected on this CPU (`Kernel::avx2`).
            unsafe { winograd_outputs_avx2(&s.m, &band, ty0, epi, out_item, (oh, ow)) };
            continue;
        }
        for r in 0..tr {
            output_rows(&s.m, &band, r, &mut s.rows);
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
/// of 4 tiles × 8 channels (`output_block_avx2`), each row of a block one masked store.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn winograd_outputs_avx2(m: &[f32], band: &Band, ty0: usize, epi: &Epilogue, out_item: &mut [f32], (oh, ow): (usize, usize)) {
    for r in 0..band.trows {
        for x0 in (0..band.tw).step_by(4) {
            let n = (ow - 2 * x0).min(8);
            for o0 in (0..epi.co).step_by(8) {
                let rows = output_block_avx2(m, band, r, x0, o0);
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
