//! Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional
//! Neural Networks", 2016) for the stride-1, pad-1 3×3 convs, which carry nearly all of a U-Net's
//! multiply-adds. Each 2×2 block of output pixels (a "tile") is Aᵀ[U ⊙ (Bᵀ d B)]A over its 4×4
//! input patch d, with U = G g Gᵀ the transformed weights: the GEMM does 16 multiply-adds per
//! tile and (ci, co) where the direct conv does 36, 2.25× fewer.
//!
//! Per band of tile rows:
//! - channel by channel (the channels split across threads where that pays), its padded
//!   (normalised, upsampled) input plane is made as for the direct conv (`Bands::fill_channel`)
//!   and the input transform takes it to V[c][pos][tile], pos being one of the 16 entries of
//!   Bᵀ d B (one plane of scratch, in L1 between the two);
//! - then output channels a group at a time (the groups split across threads where that pays):
//!   16 GEMMs M[pos] = U[pos] · V[pos] run on the direct conv's microkernel (`Kernel::tile`, with
//!   tiles as its "pixels" and input channels as its taps), and the output transform takes M back
//!   to 2×2 outputs, stored through the conv's epilogue (bias, time embedding, residual).
//!
//! U = G g Gᵀ is 16/9 of a 3×3 weight: it is kept with the weights only for small convs
//! (`KEEP_U_PAIRS`; ddpm-celebahq-256's browser memory goal left no room for more, so its bigger
//! convs ran directly, at 2.25× the multiply-adds). Bigger convs make it from the direct conv's
//! packed weights per run, a group of output channels at a time (`transform_group`, at most
//! `U_GROUP_BYTES`): O(ci · co) per band against the GEMM's O(ci · co · tiles), so they run as
//! Winograd only where a band holds enough tiles (`MIN_TILES_MAKING_U`), directly elsewhere.
//!
//! The transforms run along rows of tiles on contiguous data (the even and odd columns of each
//! padded row are split first), so they vectorise; they cost O(ci + co) per tile against the
//! GEMM's O(ci · co). The extra roundings of the transforms stay within the engine's tolerance
//! (tests/op_cases: 1e-5 × max|reference|).

use super::bands::Bands;
use super::epilogue::Epilogue;
use super::fork;
use super::gemm::{Kernel, PackedA, Taps, MC, NP};
use crate::model::ConvSpec;

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

/// Whether a 3×3 conv [co, ci] is worth running as Winograd: enough input channels that the
/// GEMM's depth (ci) outweighs the transforms (conv_in's 1 to 3 channels ran 2× slower as
/// Winograd), and more output channels than a conv runs as axpys (`FEW_CHANNELS`: conv_out).
pub fn worth_it(co: usize, ci: usize) -> bool {
    ci >= 8 && co > FEW_CHANNELS
}

/// A conv's U is kept from one run to the next where ci · co is at most this (16/9 of the weight:
/// the high-resolution levels of a U-Net, which carry its multiply-adds, have the fewest
/// channels). Bigger convs make U per run: kept, ddpm-celebahq-256's 128 × 128 convs grew its
/// peak by 58 MB (668 → 726 MB natively), past what its browser memory goal leaves.
pub const KEEP_U_PAIRS: usize = 64 * 128;

/// A conv whose U is made per run runs as Winograd only where a band holds at least this many
/// tiles: U costs ~1 ns per (ci, co) pair to make, which fewer tiles do not win back (256 × 256
/// channels, measured on AVX-512 against the direct conv: 4 × 4 tiles 0.44 vs 0.19 ms, 8 × 8 0.88
/// vs 0.77, 16 × 16 1.7 vs 3.1).
pub const MIN_TILES_MAKING_U: usize = 32;

/// A group's U (16 · ci · its channels) is at most this many bytes where it has more than one
/// register tile of channels: it is written, then read by the 16 GEMMs, from L2 beside V (on a
/// 1 MiB L2, 256 KiB to 4 MiB ran the same at 1 thread within noise; at 2 threads 1 and 4 MiB
/// were slower on some shapes, 128 KiB slower at 1 thread).
const U_GROUP_BYTES: usize = 512 << 10;

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

/// U of output channels' register tiles t0.. t0 + panels (`PackedA` panels of the direct conv's
/// weights, k = 9·c + 3·ky + kx) into `u`, packed for the GEMM: pos's panel tl is
/// u[(pos·panels + tl)·ci·MC..][..ci·MC], channel c's MC weights at c·MC. Each G g Gᵀ runs across
/// the MC channels of a panel at once (`transform_lanes`).
pub(super) fn transform_group(a: &PackedA, t0: usize, panels: usize, u: &mut Vec<f32>) {
    let ci = a.depth / 9;
    grow(u, 16 * panels * ci * MC);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: avx2 and fma were detected on this CPU.
        return unsafe { transform_group_avx2(a, (t0, panels, ci), u) };
    }
    transform_group_body(a, (t0, panels, ci), u)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn transform_group_avx2(a: &PackedA, tpc: (usize, usize, usize), u: &mut [f32]) {
    transform_group_body(a, tpc, u)
}

#[inline(always)]
fn transform_group_body(a: &PackedA, (t0, panels, ci): (usize, usize, usize), u: &mut [f32]) {
    for tl in 0..panels {
        let panel = a.panel(t0 + tl);
        for c in 0..ci {
            let g: &[f32; 9 * MC] = panel[9 * c * MC..][..9 * MC].try_into().expect("9 taps");
            for (pos, lanes) in transform_lanes(g).iter().enumerate() {
                u[((pos * panels + tl) * ci + c) * MC..][..MC].copy_from_slice(lanes);
            }
        }
    }
}

/// `transform_weight` of MC kernels at once: g[k·MC + i] is tap k of kernel i.
#[inline(always)]
fn transform_lanes(g: &[f32; 9 * MC]) -> [[f32; MC]; 16] {
    type L = [f32; MC];
    let tap = |k: usize| -> L { g[k * MC..][..MC].try_into().expect("MC") };
    let g_rows = |a: L, b: L, c: L| -> [L; 4] {
        let (mut s, mut d) = ([0.0; MC], [0.0; MC]);
        for i in 0..MC {
            s[i] = 0.5 * (a[i] + b[i] + c[i]);
            d[i] = 0.5 * (a[i] - b[i] + c[i]);
        }
        [a, s, d, c]
    };
    // G g: 4 rows of 3, column by column; then each row of it times Gᵀ.
    let cols = [g_rows(tap(0), tap(3), tap(6)), g_rows(tap(1), tap(4), tap(7)), g_rows(tap(2), tap(5), tap(8))];
    let mut u = [[0.0; MC]; 16];
    for r in 0..4 {
        u[4 * r..][..4].copy_from_slice(&g_rows(cols[0][r], cols[1][r], cols[2][r]));
    }
    u
}

/// `fill(c, plane, normed)`: channel c's padded quarters into `plane` (`normed`: scratch).
type FillChannel<'a> = dyn Fn(usize, &mut [f32], &mut Vec<f32>) + Sync + 'a;

/// V[c][pos][tile] of one band: channel by channel, `fill(c, plane, normed)` makes channel c's
/// padded input quarters and the input transform takes them to V. The channels split across up
/// to `ways` threads, each with its scratch in `scratch` (at least `ways` of them).
fn transform_input(band: &Band, fill: &FillChannel, v: &mut Vec<f32>, scratch: &mut [GroupScratch], ways: usize) {
    let per_c = 16 * band.stride();
    grow(v, band.ci * per_c);
    let run = |c0: usize, v: &mut [f32], g: &mut GroupScratch| {
        grow(&mut g.plane, band.plane);
        grow(&mut g.h, 8 * (band.trows + 1) * (band.tw + 1));
        for (k, vc) in v.chunks_exact_mut(per_c).enumerate() {
            let plane = &mut g.plane[..band.plane];
            fill(c0 + k, plane, &mut g.normed);
            input_transform(band, plane, vc, &mut g.h);
        }
    };
    let v = &mut v[..band.ci * per_c];
    if ways <= 1 {
        return run(0, v, &mut scratch[0]);
    }
    let per = band.ci.div_ceil(ways);
    fork::map(v.chunks_mut(per * per_c).zip(scratch.iter_mut()).collect(), |i, (v, g)| run(i * per, v, g));
}

/// M[pos][tile][co] of one band's group of output channels (`band.co` of them; co padded to whole
/// register tiles and tiles to whole GEMM tiles, so the GEMM stores its accumulators straight into
/// M as whole vectors): 16 GEMMs, M[pos] = U[pos] · V[pos], U from `transform_group`, V from
/// `transform_input` (channel c's V[pos] at (16·c + pos)·stride: the taps are 16 strides apart).
/// `u` holds U of `u_panels` register tiles (`transform_group`'s layout), of which this group's
/// start at `t_off`.
pub fn multiply(kernel: Kernel, (u, u_panels, t_off): (&[f32], usize, usize), v: &[f32], band: &Band, m: &mut Vec<f32>) {
    let (t, tp, cp) = (band.tiles(), band.tiles_padded(), band.co_padded());
    let (vt, panels, ci) = (band.stride(), cp / MC, band.ci);
    grow(m, 16 * tp * cp);
    let taps = Taps::new((0..ci).map(|c| 16 * c * vt).collect());
    // Tile i is at (i / tw)·(tw + 1) + i % tw in V.
    let base = |i: usize| (i / band.tw) * (band.tw + 1) + i % band.tw;
    let bases: Vec<[usize; NP]> = (0..t.div_ceil(NP)).map(|g| std::array::from_fn(|j| base((g * NP + j).min(t - 1)))).collect();
    for pos in 0..16 {
        let vp = &v[pos * vt..][..16 * ci * vt - pos * vt];
        let mp = &mut m[pos * tp * cp..][..tp * cp];
        let panel = |tl: usize| &u[(pos * u_panels + t_off + tl) * ci * MC..][..ci * MC];
        let mut ct = 0;
        while ct < panels {
            // Two channel tiles per pass where the kernel does pairs (`Kernel::pairs`).
            if kernel.pairs() && ct + 1 < panels {
                let (panel0, panel1) = (panel(ct), panel(ct + 1));
                for (g, b) in bases.iter().enumerate() {
                    kernel.tile2(panel0, panel1, vp, b, &taps, &mut mp[g * NP * cp + ct * MC..], cp, false, t - g * NP);
                }
                ct += 2;
                continue;
            }
            for (g, b) in bases.iter().enumerate() {
                kernel.tile_into(panel(ct), vp, b, &taps, &mut mp[g * NP * cp + ct * MC..], cp, false);
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

/// V[pos][r·(tw + 1) + tx] = (Bᵀ d B)[pos] of the patch of tile (r, tx) in one channel (one
/// unused column per tile row, so every step below is one contiguous loop over the whole band),
/// from the channel's padded plane as its four `quarters`.
fn input_transform(band: &Band, quarters: &[f32], v: &mut [f32], h: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: avx2 and fma were detected on this CPU.
        return unsafe { input_transform_avx2(band, quarters, v, h) };
    }
    input_transform_body(band, quarters, v, h)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn input_transform_avx2(band: &Band, quarters: &[f32], v: &mut [f32], h: &mut [f32]) {
    input_transform_body(band, quarters, v, h)
}

/// `h` (scratch, 8 quarters): h[parity][b], the horizontal transform (d Bᵀ)[b] of the even or
/// odd padded rows.
#[inline(always)]
fn input_transform_body(band: &Band, quarters: &[f32], v: &mut [f32], h: &mut [f32]) {
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
        let at = |a: usize| (4 * a + b) * vt;
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
/// faulting their pages in cost more than the transforms. A pool rather than a thread-local:
/// the browser's unthreaded builds have no threads to key it on, and a pool is shared by all.
static WINOGRAD_SCRATCH: std::sync::Mutex<Vec<WinogradScratch>> = std::sync::Mutex::new(Vec::new());

/// Scratch for one conv: its groups hold no U yet.
pub(super) fn take_scratch() -> WinogradScratch {
    let mut s = WINOGRAD_SCRATCH.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default();
    s.groups.iter_mut().for_each(|g| g.u_of = None);
    s
}

/// Gives a conv's scratch back to the pool.
pub(super) fn put_scratch(scratch: WinogradScratch) {
    WINOGRAD_SCRATCH.lock().unwrap_or_else(|p| p.into_inner()).push(scratch);
}

/// A Winograd conv's buffers, reused across its items and bands.
#[derive(Default)]
pub(super) struct WinogradScratch {
    v: Vec<f32>,
    /// One per thread a band's channels or channel groups split across.
    groups: Vec<GroupScratch>,
}

/// What one thread of a band writes: a channel's padded plane as its quarters
/// (`Bands::fill_channel`) and the input transform's rows; a group's U, its M and its output rows.
#[derive(Default)]
struct GroupScratch {
    plane: Vec<f32>,
    normed: Vec<f32>,
    h: Vec<f32>,
    u: Vec<f32>,
    /// The register tiles (first, count) of this conv that `u` holds: a conv whose U fits one
    /// group per thread makes it once, not once per item and band.
    u_of: Option<(usize, usize)>,
    m: Vec<f32>,
    rows: Vec<f32>,
}

/// One thread's GEMM rate on Winograd bands (`fork::Split::ways`' estimate of a band's time).
static WINOGRAD_RATE: fork::Rate = fork::Rate::new();
/// One thread's rate on the input transform (with the fill of its padded planes).
static INPUT_RATE: fork::Rate = fork::Rate::new();

/// One item of a Winograd conv, band by band of tile rows (`winograd`); each band's output
/// channels split across up to `split.threads` threads where the cost model says it pays. U is
/// `kept` (`transform_group` of every register tile) or made from `a` a group at a time.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_item(
    kernel: Kernel,
    (a, kept): (&PackedA, Option<&[f32]>),
    (bands, tw, trows): &(Bands, usize, usize),
    s: &mut WinogradScratch,
    xs: &[&[f32]],
    affine: Option<&[(f32, f32)]>,
    epi: &Epilogue,
    out_item: &mut [f32],
    (oh, ow, band_bytes, split): (usize, usize, usize, fork::Split),
) {
    let (tw, th) = (*tw, oh.div_ceil(2));
    let channels: Vec<&[f32]> = xs.iter().flat_map(|part| part.chunks_exact(bands.h * bands.w)).collect();
    let WinogradScratch { v, groups } = s;
    // Register tiles per group: as many as U_GROUP_BYTES holds (and the band's bytes: tests
    // with small bands run several groups on small convs), in whole steps of the kernel.
    let step = if kernel.pairs() { 2 } else { 1 };
    let co_panels = epi.co.div_ceil(MC);
    let fit = (U_GROUP_BYTES.min(band_bytes) / (16 * bands.ci * MC * 4) / step).max(1) * step;
    for ty0 in (0..th).step_by(*trows) {
        let tr = (*trows).min(th - ty0);
        let read = bands.rows_read(2 * ty0, 2 * tr);
        let band = Band { plane: bands.plane, ci: bands.ci, co: epi.co, tw, trows: tr };
        // Each channel's padded quarters are made just before their transform, in one plane of
        // scratch that stays in L1 (a whole band's went through L2 between the two).
        let fill = |c: usize, plane: &mut [f32], normed: &mut Vec<f32>| {
            bands.fill_channel(plane, normed, channels[c], affine.map(|a| a[c]), 2 * ty0, read, true)
        };
        // The input transform's work in its own unit: ~40 operations per tile, position and channel.
        let work = 40.0 * 16.0 * (band.ci * band.tiles()) as f64;
        let ways_in = split.ways(band.ci, work, &INPUT_RATE);
        if groups.len() < ways_in {
            groups.resize_with(ways_in, GroupScratch::default);
        }
        match ways_in {
            0 | 1 => INPUT_RATE.timed(work, split.threads, || transform_input(&band, &fill, v, groups, 1)),
            _ => transform_input(&band, &fill, v, groups, ways_in),
        }
        let flops = 2.0 * 16.0 * (band.ci * band.co * band.tiles()) as f64;
        let ways = split.ways(co_panels.div_ceil(step), flops, &WINOGRAD_RATE);
        // Each thread takes a contiguous run of register tiles (whole steps), in groups.
        let per_share = co_panels.div_ceil(ways).next_multiple_of(step);
        let per_group = fit.min(per_share);
        if groups.len() < ways {
            groups.resize_with(ways, GroupScratch::default);
        }
        let v = &v[..];
        let run = |t0: usize, rows: &mut [f32], g: &mut GroupScratch| {
            let group_floats = per_group * MC * epi.pixels;
            for (k, rows) in rows.chunks_mut(group_floats).enumerate() {
                let t = t0 + k * per_group;
                let band = Band { co: rows.len() / epi.pixels, ..band };
                let panels = band.co_padded() / MC;
                let u = match kept {
                    Some(kept) => (kept, co_panels, t),
                    None => {
                        if g.u_of != Some((t, panels)) {
                            transform_group(a, t, panels, &mut g.u);
                            g.u_of = Some((t, panels));
                        }
                        (&g.u[..], panels, 0)
                    }
                };
                multiply(kernel, u, v, &band, &mut g.m);
                store_outputs(kernel, &g.m, &band, (ty0, t * MC), epi, rows, &mut g.rows, (oh, ow));
            }
        };
        if ways <= 1 {
            WINOGRAD_RATE.timed(flops, split.threads, || run(0, out_item, &mut groups[0]));
            continue;
        }
        let shares: Vec<_> = out_item.chunks_mut(per_share * MC * epi.pixels).zip(groups.iter_mut()).collect();
        fork::map(shares, |i, (rows, g)| run(i * per_share, rows, g));
    }
}

/// The outputs of a band's group of `band.co` output channels from c0 (`rows`: their rows of the
/// output), its epilogue applied. `rows_scratch` holds the portable path's pixel rows.
#[allow(clippy::too_many_arguments)]
fn store_outputs(
    kernel: Kernel,
    m: &[f32],
    band: &Band,
    (ty0, c0): (usize, usize),
    epi: &Epilogue,
    rows: &mut [f32],
    rows_scratch: &mut Vec<f32>,
    (oh, ow): (usize, usize),
) {
    #[cfg(target_arch = "x86_64")]
    if kernel.avx2() {
        // SAFETY: avx2 and fma were detected on this CPU (`Kernel::avx2`).
        return unsafe { winograd_outputs_avx2(m, band, (ty0, c0), epi, rows, (oh, ow)) };
    }
    let _ = kernel;
    grow(rows_scratch, 4 * band.tw * band.co);
    for r in 0..band.trows {
        output_rows(m, band, r, rows_scratch);
        for o in 0..band.co {
            for dy in 0..2 {
                let oy = 2 * (ty0 + r) + dy;
                if oy < oh {
                    let p0 = oy * ow;
                    let src = &rows_scratch[(o * 2 + dy) * 2 * band.tw..][..ow];
                    epi.finish(c0 + o, p0, src, &mut rows[o * epi.pixels + p0..][..ow]);
                }
            }
        }
    }
}

/// `store_outputs` on AVX2: blocks of 4 tiles × 8 channels (`output_block_avx2`), each row of a
/// block one masked store.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn winograd_outputs_avx2(m: &[f32], band: &Band, (ty0, c0): (usize, usize), epi: &Epilogue, rows: &mut [f32], (oh, ow): (usize, usize)) {
    for r in 0..band.trows {
        for x0 in (0..band.tw).step_by(4) {
            let n = (ow - 2 * x0).min(8);
            for o0 in (0..band.co).step_by(8) {
                let block = output_block_avx2(m, band, r, x0, o0);
                for (dy, row) in block.iter().enumerate() {
                    let oy = 2 * (ty0 + r) + dy;
                    if oy < oh {
                        for (l, &v) in row.iter().enumerate().take(band.co - o0) {
                            epi.finish8(c0 + o0 + l, o0 + l, oy * ow + 2 * x0, n, v, rows);
                        }
                    }
                }
            }
        }
    }
}
