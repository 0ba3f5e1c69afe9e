// to_rgba: x [N,C,H,W] in [−1, 1] → RGBA8 pixels of a grid (cols × rows tiles of H×W), packed one u32 per
//   pixel (R in the low byte), rows `row_pitch` pixels apart (256-byte aligned for texture copies).
//   C = 1 → grey, C ≥ 3 → the first three channels as RGB, C = 2 → the first channel as grey;
//   `bgra` swaps red and blue for bgra8unorm canvases.
// Bindings: 0 x (read); 1 pixels (rw); 2 params. Workgroup: 64, one grid pixel each.

struct Params { n: u32, c: u32, h: u32, w: u32, cols: u32, rows: u32, row_pitch: u32, bgra: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> pixels: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

fn to_byte(v: f32) -> u32 {
    return u32(round(clamp((v + 1.0) * 0.5, 0.0, 1.0) * 255.0));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let gw = p.cols * p.w;
    if (i >= gw * p.rows * p.h) {
        return;
    }
    let gx = i % gw;
    let gy = i / gw;
    let tile = (gy / p.h) * p.cols + gx / p.w;
    var rgba = 0xff000000u; // opaque black for empty tiles
    if (tile < p.n) {
        let pix = (gy % p.h) * p.w + gx % p.w;
        let plane = p.h * p.w;
        let base = tile * p.c * plane + pix;
        var r = to_byte(x[base]);
        var g = r;
        var b = r;
        if (p.c >= 3u) {
            g = to_byte(x[base + plane]);
            b = to_byte(x[base + 2u * plane]);
        }
        if (p.bgra != 0u) {
            let t = r;
            r = b;
            b = t;
        }
        rgba = r | (g << 8u) | (b << 16u) | 0xff000000u;
    }
    pixels[gy * p.row_pitch + gx] = rgba;
}
