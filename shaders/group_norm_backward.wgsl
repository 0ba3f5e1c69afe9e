// group_norm_backward: the input gradient of s = silu(group_norm(z)) (torch: biased variance).
//   With x̂ = (z − μ)·r, r = 1/√(σ² + ε), a = γx̂ + β and u = g·silu'(a)·γ (g = dL/ds):
//   dL/dz = r·(u − mean(u) − x̂·mean(u·x̂)) over the group. The statistics are recomputed from z
//   (the forward keeps z, not the normalised tensor). The classifier's backward (guidance).
// Bindings: 0 g (read), 1 z (read), 2 gamma [C], 3 beta [C] (read); 4 out (rw); 5 params.
// Workgroup: 256 invocations per (item, group), over wid.x + wid.y·nwg.x; each strides the group.

struct Params { c: u32, hw: u32, groups: u32, eps: f32 }

@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

const WG: u32 = 256u;
var<workgroup> red_a: array<f32, 256>;
var<workgroup> red_b: array<f32, 256>;

// Sums of the two per-invocation values over the workgroup (tree reduction), left in red_*[0].
fn reduce2(lid: u32, a: f32, b: f32) -> vec2<f32> {
    red_a[lid] = a;
    red_b[lid] = b;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red_a[lid] += red_a[lid + s];
            red_b[lid] += red_b[lid + s];
        }
        workgroupBarrier();
    }
    let r = vec2<f32>(red_a[0], red_b[0]);
    workgroupBarrier();
    return r;
}

// (u, x̂) of element j in channel ch: x̂ = (z − μ)·r, u = g·silu'(γx̂ + β)·γ.
fn u_and_xhat(j: u32, ch: u32, mean: f32, r: f32) -> vec2<f32> {
    let xh = (z[j] - mean) * r;
    let a = gamma[ch] * xh + beta[ch];
    let sg = 1.0 / (1.0 + exp(-a));
    return vec2<f32>(g[j] * sg * (1.0 + a * (1.0 - sg)) * gamma[ch], xh);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let lid = lid3.x;
    let ng = wid.x + wid.y * nwg.x; // (item, group), item-major
    let cg = p.c / p.groups;
    let per = cg * p.hw;
    let base = ng * per;
    let c0 = (ng % p.groups) * cg;
    let count = f32(per);
    // Mean, then the variance about it (two passes, as the f64 reference is exact enough for).
    var s = 0.0;
    for (var i = lid; i < per; i += WG) {
        s += z[base + i];
    }
    let mean = reduce2(lid, s, 0.0).x / count;
    var v = 0.0;
    for (var i = lid; i < per; i += WG) {
        let d = z[base + i] - mean;
        v += d * d;
    }
    let r = inverseSqrt(reduce2(lid, v, 0.0).x / count + p.eps);
    var su = 0.0;
    var sux = 0.0;
    for (var i = lid; i < per; i += WG) {
        let ux = u_and_xhat(base + i, c0 + i / p.hw, mean, r);
        su += ux.x;
        sux += ux.x * ux.y;
    }
    let sums = reduce2(lid, su, sux);
    let mu = sums.x / count;
    let mux = sums.y / count;
    for (var i = lid; i < per; i += WG) {
        let ux = u_and_xhat(base + i, c0 + i / p.hw, mean, r);
        out[base + i] = r * (ux.x - mu - ux.y * mux);
    }
}
