// attention: per batch n and head h, O_h = softmax(Q_hᵀ K_h / √d) V_h on [N, heads·d, L] tensors,
//   in three entry points: `scores` (S = QᵀK/√d), `softmax` (rows of S, in place), `apply` (O = V Pᵀ).
// Bindings: 0 a, 1 b (read); 2 out (rw); 3 params — scores: a=Q b=K out=S; softmax: out=S; apply: a=P b=V out=O.
// Workgroups: 64 invocations; scores/apply one output element each, softmax one row each.

struct Params { n: u32, heads: u32, d: u32, l: u32, scale: f32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// S[nh, i, j] = scale · Σ_c Q[n, h·d+c, i] · K[n, h·d+c, j]
@compute @workgroup_size(64)
fn scores(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if (idx >= p.n * p.heads * p.l * p.l) {
        return;
    }
    let j = idx % p.l;
    let i = (idx / p.l) % p.l;
    let nh = idx / (p.l * p.l); // = n·heads + h, and (n·heads + h)·d·L is where head h of item n starts
    let base = nh * p.d * p.l;
    var s = 0.0;
    for (var c = 0u; c < p.d; c++) {
        s += a[base + c * p.l + i] * b[base + c * p.l + j];
    }
    out[idx] = s * p.scale;
}

// One invocation per row of S, serially: rows are short (L = H·W of an attention block), and a
// workgroup reduction's barriers cost more than the row itself on the CPU adapters.
@compute @workgroup_size(64)
fn softmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * 64u;
    if (row >= p.n * p.heads * p.l) {
        return;
    }
    let base = row * p.l;
    var m = -3.4e38;
    for (var j = 0u; j < p.l; j++) {
        m = max(m, out[base + j]);
    }
    var s = 0.0;
    for (var j = 0u; j < p.l; j++) {
        let e = exp(out[base + j] - m);
        out[base + j] = e;
        s += e;
    }
    let inv = 1.0 / s;
    for (var j = 0u; j < p.l; j++) {
        out[base + j] *= inv;
    }
}

// O[n, h·d+c, i] = Σ_j P[nh, i, j] · V[n, h·d+c, j]
@compute @workgroup_size(64)
fn apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if (idx >= p.n * p.heads * p.d * p.l) {
        return;
    }
    let i = idx % p.l;
    let c = (idx / p.l) % p.d;
    let nh = idx / (p.l * p.d);
    let prow = (nh * p.l + i) * p.l;
    let vrow = (nh * p.d + c) * p.l;
    var s = 0.0;
    for (var j = 0u; j < p.l; j++) {
        s += a[prow + j] * b[vrow + j];
    }
    out[idx] = s;
}
