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

use super::bands::Bands;
use super::epilogue::{Epilogue, ACC_STRIDE};
use super::fork;
use super::gemm::{Kernel, PackedA, Taps, MC, NP};
use super::norm;
use super::winograd::{self, WinogradScratch, FEW_CHANNELS};
use crate::error::{Error, Result};
use crate::model::{ConvArgs, ConvSpec};
use crate::tensor::Tensor;

/// A conv weight [Co, Ci, k, k] packed for the GEMM (Winograd makes its U from this too).
#[derive(Clone, Debug)]
pub struct ConvWeights {
    pub co: usize,
    pub ci: usize,
    pub k: usize,
    pub a: PackedA,
    /// Winograd's U (`winograd::transform_group` of every register tile), made at the conv's first
    /// Winograd run where it is small enough to keep (`winograd::KEEP_U_PAIRS`).
    pub u: std::sync::OnceLock<Vec<f32>>,
}

impl ConvWeights {
    pub fn pack(w: &Tensor) -> Result<Self> {
        let &[co, ci, k, k2] = &w.shape[..] else {
            return Err(Error::Input(format!("conv2d: weight must be [Co, Ci, k, k], got {:?}", w.shape)));
        };
        if k != k2 {
            return Err(Error::Input(format!("conv2d: non-square kernel {:?}", w.shape)));
        }
        Ok(ConvWeights { co, ci, k, a: PackedA::pack(&w.data, co, ci * k * k), u: Default::default() })
    }
}

/// Which stride-1 3×3 convs run as Winograd F(2×2, 3×3) (`winograd::fits`, `winograd::worth_it`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Winograd {
    Off,
    /// Those whose U is kept (`winograd::KEEP_U_PAIRS`), and those whose bands hold enough tiles
    /// to make it per run (`winograd::MIN_TILES_MAKING_U`).
    On,
    /// All, each making its U per run (tests: that path on small shapes).
    MakingU,
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

/// The fused conv: (conv(x̂) + bias + chan_add[n, co] + residual) / out_scale, like `reference::ops::conv2d`,
/// where x is the concatenation of `parts` along channels (an up block's input, never stored) and
/// x̂ = silu(group_norm(x)) where `pre` is given, x̂ = x elsewhere; it reads its padded input in
/// bands of at most `band_bytes` (at least one output row). With `winograd`, a conv that
/// `winograd::fits` and whose weights were transformed runs as F(2×2, 3×3). Up to
/// `split.threads` threads split each band's output channels where the cost model says it pays
/// (`fork`).
/// `conv.weight` is not read: `cw` is its packed copy.
pub fn conv2d(
    kernel: Kernel,
    parts: &[&Tensor],
    pre: Option<PreNorm>,
    cw: &ConvWeights,
    conv: ConvArgs<'_, Tensor>,
    (band_bytes, winograd, split): (usize, Winograd, fork::Split),
) -> Result<Tensor> {
    let ConvArgs { bias, spec, chan_add, residual, out_scale, .. } = conv;
    let bias = &bias.data[..];
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
    let keep = winograd == Winograd::On && co * ci <= winograd::KEEP_U_PAIRS;
    let wino = (winograd != Winograd::Off && winograd::fits(spec, cw.k) && winograd::worth_it(co, ci))
        .then(|| Bands::winograd((cw.ci, cw.co, cw.k), (h, w), spec, (oh, ow), band_bytes))
        .filter(|&(_, tw, trows)| keep || winograd == Winograd::MakingU || tw * trows >= winograd::MIN_TILES_MAKING_U);
    let mut path = match wino {
        Some(bands) => {
            let all_tiles = || {
                let mut u = Vec::new();
                winograd::transform_group(&cw.a, 0, cw.a.tiles(), &mut u);
                u
            };
            let kept = keep.then(|| &cw.u.get_or_init(all_tiles)[..]);
            Path::Winograd(bands, winograd::take_scratch(), kept)
        }
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
            Path::Direct(d) => d.item(kernel, cw, &xs, affine.as_deref(), &epi, out_item, (oh, split)),
            Path::Winograd(bands, scratch, kept) => winograd::conv_item(
                kernel,
                (&cw.a, *kept),
                bands,
                scratch,
                &xs,
                affine.as_deref(),
                &epi,
                out_item,
                (oh, ow, band_bytes, split),
            ),
        }
    }
    if let Path::Winograd(_, scratch, _) = path {
        winograd::put_scratch(scratch);
    }
    Tensor::new(vec![n, co, oh, ow], out)
}

/// How a conv runs: directly (the GEMM over taps) or as F(2×2, 3×3).
enum Path<'a> {
    Direct(Direct),
    /// The bands, their scratch, and U where the weights keep it.
    Winograd((Bands, usize, usize), WinogradScratch, Option<&'a [f32]>),
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
        let bands = Bands::new((cw.ci, cw.k), hw, spec, (oh, ow), band_bytes, copied);
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
        (oh, split): (usize, fork::Split),
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
            // Channel tiles outer: the weight panel stays in cache while the pixel tiles sweep the
            // band. Where the kernel computes two channel tiles per pass (`Kernel::pairs`), the
            // rows come two tiles at a time (the last chunk may hold one). Threads take
            // contiguous runs of those chunks where the cost model says the split pays.
            let step = if kernel.pairs() { 2 } else { 1 };
            let chunk = step * MC * p_total;
            let flops = 2.0 * (cw.co * cw.a.depth * count) as f64;
            let ways = split.ways(out_item.len().div_ceil(chunk), flops, &DIRECT_RATE);
            let run = |first: usize, rows: &mut [f32]| channel_chunks(kernel, cw, (&sources, tiles), epi, (p0, count, step), (first, rows));
            if ways <= 1 {
                DIRECT_RATE.timed(flops, split.threads, || run(0, out_item));
                continue;
            }
            let per = out_item.len().div_ceil(chunk).div_ceil(ways);
            fork::map(out_item.chunks_mut(per * chunk).collect(), |i, rows| run(i * per, rows));
        }
    }
}

/// What a direct conv's GEMM reads: a part's first channel, its taps, its values (or the band's).
type Source<'a> = (usize, &'a Taps, &'a [f32]);

/// One thread's GEMM rate on direct convs (`fork::ways`' estimate of a band's time).
static DIRECT_RATE: fork::Rate = fork::Rate::new();

/// The direct conv's channel chunks of one band, the first being chunk `first` of the output:
/// `out_rows` holds those chunks' rows. `acc` holds a pixel tile's accumulators, summed over the
/// sources.
fn channel_chunks(
    kernel: Kernel,
    cw: &ConvWeights,
    (sources, tiles): (&[Source], &[[usize; NP]]),
    epi: &Epilogue,
    (p0, count, step): (usize, usize, usize),
    (first, out_rows): (usize, &mut [f32]),
) {
    let p_total = epi.pixels;
    let mut acc = [0f32; NP * ACC_STRIDE];
    for (c, out_rows) in out_rows.chunks_mut(step * MC * p_total).enumerate() {
        let t = (first + c) * step;
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
