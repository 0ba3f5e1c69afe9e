// linear: y[n,o] = act_out(Σ_i W[o,i]·act_in(x[n,i]) + b[o]), act = SiLU when its flag is set.
// Bindings: 0 x [N,I], 1 W [O,I], 2 b [O] (read); 3 y [N,O] (rw); 4 params.
// Workgroup: 64 invocations, 1-D, one output element each (the time-embedding MLPs are tiny).

struct Params { n: u32, fin: u32, fout: u32, silu_in: u32, silu_out: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if (idx >= p.n * p.fout) {
        return;
    }
    let o = idx % p.fout;
    let n = idx / p.fout;
    var s = 0.0;
    for (var i = 0u; i < p.fin; i++) {
        var v = x[n * p.fin + i];
        if (p.silu_in != 0u) {
            v = silu(v);
        }
        s += w[o * p.fin + i] * v;
    }
    s += b[o];
    if (p.silu_out != 0u) {
        s = silu(s);
    }
    y[idx] = s;
}
