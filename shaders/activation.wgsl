// activation: the resnets' act_fn (silu, mish, gelu, relu), elementwise, optionally after a
//   per-(item, channel) scale and shift (AdaGN, time_embedding_norm "scale_shift"):
//   main: out = act(x);  film: out = act(x·(1 + film[n, c]) + film[n, C + c]).
// Bindings: 0 x [N, C, HW] (read); 1 out (rw); 2 params; 3 film [N, 2C] (read, `film` only).
// Workgroup: 64, one value each, 1-D over wid.x + wid.y·nwg.x. Codes: 0 silu, 1 mish, 2 gelu, 3 relu.

struct Params { count: u32, c: u32, hw: u32, act: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> film_in: array<f32>;

// erf to 1.5e-7 (Abramowitz and Stegun 7.1.26): WGSL has no erf, nn.GELU is the erf form.
fn erf(v: f32) -> f32 {
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let y = 1.0 - t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))) * exp(-a * a);
    return select(y, -y, v < 0.0);
}

fn act(v: f32) -> f32 {
    switch p.act {
        case 0u: { return v / (1.0 + exp(-v)); }
        case 1u: {
            // softplus with torch's threshold of 20; log1p's first terms where e^v is tiny.
            let e = exp(v);
            var sp = select(log(1.0 + e), e * (1.0 - 0.5 * e), e < 1e-4);
            sp = select(sp, v, v > 20.0);
            return v * tanh(min(sp, 20.0));
        }
        case 2u: { return 0.5 * v * (1.0 + erf(v * 0.70710678118)); }
        default: { return max(v, 0.0); }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i < p.count) {
        out[i] = act(x[i]);
    }
}

@compute @workgroup_size(64)
fn film(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.count) {
        return;
    }
    let nc = i / p.hw;
    let n = nc / p.c;
    let c = nc % p.c;
    let scale = film_in[n * 2u * p.c + c];
    let shift = film_in[n * 2u * p.c + p.c + c];
    out[i] = act(x[i] * (1.0 + scale) + shift);
}
