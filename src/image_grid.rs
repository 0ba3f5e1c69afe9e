//! Turning samples into pixels on the host (the CPU twin of `shaders/present.wgsl`), for PNGs and
//! the CPU engine's canvas.

use crate::tensor::Tensor;

/// Columns of the grid a batch of `n` is shown in (near-square, wider than tall).
pub fn grid_cols(n: usize) -> usize {
    (n as f64).sqrt().ceil().max(1.0) as usize
}

fn to_byte(v: f32) -> u8 {
    (((v + 1.0) * 0.5).clamp(0.0, 1.0) * 255.0).round() as u8
}

/// The range the signed views map to their colours: ±3 (ε̂ is unit Gaussian where the model is right).
pub const SIGNED_SCALE: f32 = 3.0;

/// Blue (−1) – white (0) – red (+1) of v (the CPU twin of present.wgsl's `diverging`).
fn diverging(v: f32) -> [u8; 3] {
    let t = v.clamp(-1.0, 1.0);
    let (end, t) = if t < 0.0 { ([59.0f32, 76.0, 192.0], -t) } else { ([180.0, 4.0, 38.0], t) };
    // As WGSL's round(mix(255, e, t)): 255·(1 − t) + e·t, ties to even, so both presenters agree.
    end.map(|e| (255.0 * (1.0 - t) + e * t).round_ties_even() as u8)
}

/// RGBA8 pixels of `x` [N,C,H,W] (values in [−1, 1]) as a grid with `cols` columns.
/// Returns (width, height, pixels). C = 1 or 2 → grey from channel 0; C ≥ 3 → RGB.
pub fn grid_rgba(x: &Tensor, cols: usize) -> (usize, usize, Vec<u8>) {
    grid_rgba_mapped(x, cols, None)
}

/// As `grid_rgba`, or with `signed` = Some(scale) the signed map of v/scale (a predicted noise):
/// C = 1 or 2 → blue–white–red; C ≥ 3 → each channel around mid-grey.
pub fn grid_rgba_mapped(x: &Tensor, cols: usize, signed: Option<f32>) -> (usize, usize, Vec<u8>) {
    let [n, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let rows = n.div_ceil(cols);
    let (gw, gh) = (cols * w, rows * h);
    let mut out = vec![0u8; gw * gh * 4];
    for gy in 0..gh {
        for gx in 0..gw {
            let tile = (gy / h) * cols + gx / w;
            let o = (gy * gw + gx) * 4;
            out[o + 3] = 255;
            if tile >= n {
                continue;
            }
            let plane = h * w;
            let base = tile * c * plane + (gy % h) * w + gx % w;
            let s = signed.unwrap_or(1.0);
            let px = match (signed.is_some(), c >= 3) {
                (true, false) => diverging(x.data[base] / s),
                (_, true) => [0, 1, 2].map(|k| to_byte(x.data[base + k * plane] / s)),
                (false, false) => [to_byte(x.data[base]); 3],
            };
            out[o..o + 3].copy_from_slice(&px);
        }
    }
    (gw, gh, out)
}
