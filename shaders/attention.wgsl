// attention: per batch n and head h, O_h = softmax(Q_hᵀ K_h / √d) V_h on [N, heads·d, L] tensors,
//   in three entry points: `scores` (S = QᵀK/√d), `softmax` (rows of S, in place), `apply` (O = V Pᵀ).
// Bindings: 0 a, 1 b (read); 2 out (rw); 3 params — scores: a=Q b=K out=S; softmax: out=S; apply: a=P b=V out=O.
// Workgroups: scores/apply 64 invocations, one output element each; softmax 64 invocations per row.

struct Params { n: u32, heads: u32, d: u32, l: u32, scale: f32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> red: array<f32, 64>;

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

fn reduce(lid: u32, v: f32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            if (is_max) { red[lid] = max(red[lid], red[lid + s]); } else { red[lid] += red[lid + s]; }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.n * p.heads * p.l) {
        return; // uniform per workgroup
    }
    let base = row * p.l;
    var m = -3.4e38;
    for (var j = lid; j < p.l; j += 64u) {
        m = max(m, out[base + j]);
    }
    m = reduce(lid, m, true);
    var s = 0.0;
    for (var j = lid; j < p.l; j += 64u) {
        let e = exp(out[base + j] - m);
        out[base + j] = e;
        s += e;
    }
    let inv = 1.0 / reduce(lid, s, false);
    for (var j = lid; j < p.l; j += 64u) {
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
