//! Attention (scores, softmax, weighted sum) as two GEMMs on the conv microkernel (`gemm`), with
//! queries across the vector lanes throughout, in the [C, L] layout the tensors have:
//! - scores S[j][i] = Σ_c k[c][j] · q[c][i]: A is q packed in panels of MC queries (channels as
//!   the depth), B is k read in place (one base per key, one offset per channel);
//! - softmax down each query's column of S, MC queries at a time (exp is `norm`'s vectorisable one);
//! - out[c][i] = Σ_j v[c][j] · P[j][i]: S is already in A's panel layout (keys as the depth), and
//!   v is read in place (one base per channel, one offset per key); each tile's rows are rows of
//!   the output.
//!
//! The reference (one query at a time, 8-lane dot products) took 5 % of the bundled model's forward.

use super::fork;
use super::gemm::{Kernel, Taps, MC, NP};
use super::norm::exp;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

const LANES: usize = 8;

/// a · b over `LANES` independent lanes (so it vectorises).
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Per head h: out[:, h] = softmax(q_hᵀ k_h / √d) v_h, on [N, heads·d, H, W] (like
/// `reference::ops::attention`). Each head's query panels split across up to `split.threads`
/// threads where the cost model says it pays.
pub fn attention(kernel: Kernel, q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, d: usize, split: fork::Split) -> Result<Tensor> {
    let &[n, inner, h, w] = &q.shape[..] else {
        return Err(Error::Input(format!("attention: q must be [N, C, H, W], got {:?}", q.shape)));
    };
    if inner != heads * d || k.shape != q.shape || v.shape != q.shape {
        return Err(Error::Input(format!("attention: q {:?} k {:?} v {:?} for {heads} heads of {d}", q.shape, k.shape, v.shape)));
    }
    let mut out = vec![0.0f32; q.len()];
    let l = h * w;
    if l == 0 || d == 0 {
        return Tensor::new(q.shape.clone(), out);
    }
    let mut head = Head::new(d, l);
    for base in (0..n * heads).map(|i| i * d * l) {
        let (qh, kh, vh) = (&q.data[base..][..d * l], &k.data[base..][..d * l], &v.data[base..][..d * l]);
        head.run(kernel, qh, kh, vh, &mut out[base..][..d * l], split);
    }
    Tensor::new(q.shape.clone(), out)
}

/// One head's geometry and scratch.
struct Head {
    d: usize,
    l: usize,
    /// Query panels: ⌈l/MC⌉.
    panels: usize,
    /// Rows of a panel of S: l keys rounded up to whole GEMM tiles (the last tile repeats its last
    /// key; those rows are never read).
    rows: usize,
    /// q packed: panel t holds q[c][t·MC + ii] at [t][c][ii] (zero past l).
    qa: Vec<f32>,
    /// S, then P = softmax(S), of one panel: [j][ii] (the calling thread's; a split's shares have
    /// their own).
    s: Vec<f32>,
    /// Channels' taps for the scores (c·l) and keys' taps for the output (j).
    channel_taps: Taps,
    key_taps: Taps,
    /// Each key (scores) and each channel's row (output) as GEMM tiles of bases.
    key_tiles: Vec<[usize; NP]>,
    channel_tiles: Vec<[usize; NP]>,
}

impl Head {
    fn new(d: usize, l: usize) -> Self {
        let panels = l.div_ceil(MC);
        let rows = l.next_multiple_of(NP);
        let tiles = |count: usize, step: usize| -> Vec<[usize; NP]> {
            (0..count.div_ceil(NP)).map(|t| std::array::from_fn(|j| (t * NP + j).min(count - 1) * step)).collect()
        };
        Head {
            d,
            l,
            panels,
            rows,
            qa: vec![0.0; panels * d * MC],
            s: vec![0.0; rows * MC],
            channel_taps: Taps::new((0..d).map(|c| c * l).collect()),
            key_taps: Taps::new((0..l).collect()),
            key_tiles: tiles(l, 1),
            channel_tiles: tiles(d, l),
        }
    }

    fn run(&mut self, kernel: Kernel, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], split: fork::Split) {
        let (d, l) = (self.d, self.l);
        for t in 0..self.panels {
            let n = MC.min(l - t * MC);
            for c in 0..d {
                self.qa[(t * d + c) * MC..][..n].copy_from_slice(&q[c * l + t * MC..][..n]);
            }
        }
        let flops = 4.0 * (d * l * l) as f64;
        let ways = split.ways(self.panels, flops, &ATTENTION_RATE);
        if ways <= 1 {
            let mut s = std::mem::take(&mut self.s);
            ATTENTION_RATE.timed(flops, split.threads, || self.panels(kernel, 0..self.panels, (k, v), &mut s, (out, l)));
            self.s = s;
            return;
        }
        // Each share writes its queries' columns of every channel into its own rows, copied into
        // place after (the shares' columns interleave in `out`).
        let per = self.panels.div_ceil(ways);
        let shares: Vec<_> = (0..self.panels).step_by(per).map(|t0| t0..(t0 + per).min(self.panels)).collect();
        let this = &*self;
        let parts = fork::map(shares, |_, ts| {
            let cols = (MC * ts.end).min(l) - MC * ts.start;
            let (mut s, mut rows) = (vec![0.0; this.rows * MC], vec![0.0; d * cols]);
            this.panels(kernel, ts.clone(), (k, v), &mut s, (&mut rows, cols));
            (ts.start * MC, cols, rows)
        });
        for (col0, cols, rows) in parts {
            for (c, row) in rows.chunks_exact(cols).enumerate() {
                out[c * l + col0..][..cols].copy_from_slice(row);
            }
        }
    }

    /// Query panels `ts` of one head into `out`: d rows of `row_len` floats, the first column being
    /// query MC·ts.start. `s` is one panel's scores (scratch).
    fn panels(
        &self,
        kernel: Kernel,
        ts: std::ops::Range<usize>,
        (k, v): (&[f32], &[f32]),
        s: &mut [f32],
        (out, row_len): (&mut [f32], usize),
    ) {
        let (d, l) = (self.d, self.l);
        let scale = 1.0 / (d as f32).sqrt();
        let col0 = ts.start * MC;
        for t in ts {
            let panel = &self.qa[t * d * MC..][..d * MC];
            let s = &mut s[..self.rows * MC];
            for (g, bases) in self.key_tiles.iter().enumerate() {
                kernel.tile_into(panel, k, bases, &self.channel_taps, &mut s[g * NP * MC..], MC, false);
            }
            let inv = softmax_columns(&mut s[..l * MC], scale);
            let p = &s[..l * MC];
            let n = MC.min(l - t * MC);
            for (g, bases) in self.channel_tiles.iter().enumerate() {
                let acc = kernel.tile(p, v, bases, &self.key_taps);
                for (j, row) in acc.iter().enumerate().take(d - g * NP) {
                    let dst = &mut out[(g * NP + j) * row_len + t * MC - col0..][..n];
                    dst.iter_mut().zip(row.iter().zip(&inv)).for_each(|(o, (a, i))| *o = a * i);
                }
            }
        }
    }
}

/// One thread's rate on attention heads (`fork::Split::ways`' estimate of a head's time).
static ATTENTION_RATE: fork::Rate = fork::Rate::new();

/// Softmax down each of the MC columns of `s` ([keys][MC] rows) of scores scaled by `scale`, as
/// the reference computes it (exp(x·scale − max·scale)); returns each column's 1 / Σ, which the
/// output is scaled by.
fn softmax_columns(s: &mut [f32], scale: f32) -> [f32; MC] {
    let mut m = [f32::NEG_INFINITY; MC];
    for row in s.chunks_exact(MC) {
        (0..MC).for_each(|i| m[i] = m[i].max(row[i]));
    }
    let m: [f32; MC] = std::array::from_fn(|i| m[i] * scale);
    let mut sum = [0f32; MC];
    for row in s.chunks_exact_mut(MC) {
        for i in 0..MC {
            row[i] = exp(row[i] * scale - m[i]);
            sum[i] += row[i];
        }
    }
    std::array::from_fn(|i| 1.0 / sum[i])
}
