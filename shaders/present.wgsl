// present: draws x [N,C,H,W] (values in [−1, 1]) into the canvas as a grid of `cols` tiles: a full-screen
//   triangle whose fragment shader reads the sample straight from its storage buffer (no readback, no copy).
//   C = 1 or 2 → grey from channel 0; C ≥ 3 → RGB. The canvas format's channel order is handled by the blend unit.
//   Signed views (the predicted noise ε̂, `signed` = 1) show v/scale: C < 3 on a blue–white–red map, C ≥ 3 each
//   channel around mid-grey. `offset` is where the tensor starts in the buffer; with `minus` the value drawn is
//   weight·(x[offset + i] − x[second + i]) (classifier-free guidance's term from the U-Net's two halves).
//   `left`: the panel's first pixel column in the target (several views side by side, each in its viewport).
// Bindings: 0 x (read-only storage, fragment stage); 1 params. Workgroup: none (render pipeline, 3 vertices).

struct Params {
    n: u32, c: u32, h: u32, w: u32,
    cols: u32, rows: u32, signed: u32, scale: f32,
    offset: u32, minus: u32, second: u32, weight: f32,
    left: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

// The value drawn at index i of the tensor.
fn value(i: u32) -> f32 {
    if (p.minus != 0u) {
        return p.weight * (x[p.offset + i] - x[p.second + i]);
    }
    return x[p.offset + i];
}

@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    // (−1,−1), (3,−1), (−1,3): one triangle covering the viewport.
    let uv = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    return vec4<f32>(uv * 2.0 - 1.0, 0.0, 1.0);
}

fn level(v: f32) -> f32 {
    // The same 8-bit levels as the CPU presenter: round((v + 1) / 2 · 255) / 255.
    return round(clamp((v + 1.0) * 0.5, 0.0, 1.0) * 255.0) / 255.0;
}

@fragment
fn fs_main(@builtin(position) pos: vec4<f32>) -> @location(0) vec4<f32> {
    let gx = u32(pos.x) - p.left;
    let gy = u32(pos.y);
    let tile = (gy / p.h) * p.cols + gx / p.w;
    if (tile >= p.n || gx >= p.cols * p.w || gy >= p.rows * p.h) {
        return vec4<f32>(0.0, 0.0, 0.0, 1.0);
    }
    let plane = p.h * p.w;
    let base = tile * p.c * plane + (gy % p.h) * p.w + gx % p.w;
    if (p.signed != 0u) {
        let v = value(base) / p.scale;
        if (p.c >= 3u) {
            return vec4<f32>(level(v), level(value(base + plane) / p.scale), level(value(base + 2u * plane) / p.scale), 1.0);
        }
        return vec4<f32>(diverging(v), 1.0);
    }
    let r = level(value(base));
    if (p.c >= 3u) {
        return vec4<f32>(r, level(value(base + plane)), level(value(base + 2u * plane)), 1.0);
    }
    return vec4<f32>(r, r, r, 1.0);
}

// Blue (−1) – white (0) – red (+1), each channel on the same 8-bit levels as the CPU presenter.
fn diverging(v: f32) -> vec3<f32> {
    let t = clamp(v, -1.0, 1.0);
    let blue = vec3<f32>(59.0, 76.0, 192.0);
    let red = vec3<f32>(180.0, 4.0, 38.0);
    let c = select(mix(vec3<f32>(255.0), red, t), mix(vec3<f32>(255.0), blue, -t), t < 0.0);
    return round(c) / 255.0;
}
