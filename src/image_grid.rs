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

/// RGBA8 pixels of `x` [N,C,H,W] (values in [−1, 1]) as a grid with `cols` columns.
/// Returns (width, height, pixels). C = 1 or 2 → grey from channel 0; C ≥ 3 → RGB.
pub fn grid_rgba(x: &Tensor, cols: usize) -> (usize, usize, Vec<u8>) {
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
            let r = to_byte(x.data[base]);
            let (g, b) = if c >= 3 { (to_byte(x.data[base + plane]), to_byte(x.data[base + 2 * plane])) } else { (r, r) };
            out[o..o + 3].copy_from_slice(&[r, g, b]);
        }
    }
    (gw, gh, out)
}
