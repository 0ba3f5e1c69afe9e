// timestep_embedding: diffusers get_timestep_embedding: freq_k = exp(−ln(10000)·k/(half − shift)),
//   out[n] = [sin(t·freq), cos(t·freq)] (halves swapped when flip_sin_to_cos).
// fourier: GaussianFourierProjection (log, no flip): out[n] = [sin(a), cos(a)], a_j = log(t)·w_j·2·π,
//   dim = 2·len(w) (the score-SDE models' time_proj).
// Bindings: 0 t [N] (read); 1 out [N, dim] (rw); 2 params; 3 w [dim / 2] (read, `fourier` only).
// Workgroup: 64, one (n, k) pair each.
// sin/cos are computed after an explicit Cody-Waite range reduction and short polynomials, because
// WGSL only promises 2^-11 absolute accuracy for sin/cos, and t·freq reaches ~1000 radians.

struct Params { n: u32, dim: u32, flip: u32, shift: f32 }

@group(0) @binding(0) var<storage, read> t: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> w: array<f32>;

// Returns (sin a, cos a).
fn sincos(a: f32) -> vec2<f32> {
    // a = q·(π/2) + r with |r| ≤ π/4; π/2 split in three parts so q·part is exact or tiny.
    let q = round(a * 0.63661977236);
    let r = ((a - q * 1.5703125) - q * 4.8375129699707031e-4) - q * 7.549789948768648e-8;
    let r2 = r * r;
    let s = r * (1.0 + r2 * (-1.6666667e-1 + r2 * (8.3333333e-3 + r2 * (-1.9841270e-4 + r2 * 2.7557319e-6))));
    let c = 1.0 + r2 * (-0.5 + r2 * (4.1666667e-2 + r2 * (-1.3888889e-3 + r2 * (2.4801587e-5 - r2 * 2.7557319e-7))));
    let qi = i32(q) & 3;
    if (qi == 0) { return vec2<f32>(s, c); }
    if (qi == 1) { return vec2<f32>(c, -s); }
    if (qi == 2) { return vec2<f32>(-s, -c); }
    return vec2<f32>(-c, s);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = p.dim / 2u;
    if (gid.x >= p.n * half) {
        return;
    }
    let k = gid.x % half;
    let n = gid.x / half;
    let exponent = -9.2103403720 * f32(k) / (f32(half) - p.shift);
    let sc = sincos(t[n] * exp(exponent));
    var first = sc.x;
    var second = sc.y;
    if (p.flip != 0u) {
        first = sc.y;
        second = sc.x;
    }
    out[n * p.dim + k] = first;
    out[n * p.dim + half + k] = second;
    if (k == 0u && (p.dim & 1u) == 1u) {
        out[n * p.dim + p.dim - 1u] = 0.0;
    }
}

@compute @workgroup_size(64)
fn fourier(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = p.dim / 2u;
    if (gid.x >= p.n * half) {
        return;
    }
    let k = gid.x % half;
    let n = gid.x / half;
    // torch's order: ((log t · w) · 2) · π, each rounded to f32.
    let sc = sincos(((log(t[n]) * w[k]) * 2.0) * 3.14159265358979);
    out[n * p.dim + k] = sc.x;
    out[n * p.dim + half + k] = sc.y;
}
