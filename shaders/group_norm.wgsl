// group_norm: torch group_norm (biased variance, two passes for accuracy), optionally followed by SiLU.
// Bindings: 0 x [N,C,HW], 1 gamma [C], 2 beta [C] (read); 3 out (rw); 4 params.
// Workgroup: 256 invocations per (n, group); workgroup index = wid.x + wid.y·nwg.x.

struct Params { n: u32, c: u32, hw: u32, groups: u32, eps: f32, silu: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> partial: array<f32, 256>;

fn reduce_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g_all = wid.x + wid.y * nwg.x;
    if (g_all >= p.n * p.groups) {
        return; // uniform across the workgroup: every invocation of this group leaves
    }
    let cg = p.c / p.groups;
    let span = cg * p.hw;
    let base = g_all * span; // groups are contiguous in NCHW
    var s = 0.0;
    for (var i = lid; i < span; i += 256u) {
        s += x[base + i];
    }
    let mean = reduce_sum(lid, s) / f32(span);
    var q = 0.0;
    for (var i = lid; i < span; i += 256u) {
        let d = x[base + i] - mean;
        q += d * d;
    }
    let inv = inverseSqrt(reduce_sum(lid, q) / f32(span) + p.eps);
    let c0 = (g_all % p.groups) * cg;
    for (var i = lid; i < span; i += 256u) {
        let ch = c0 + i / p.hw;
        var y = (x[base + i] - mean) * inv * gamma[ch] + beta[ch];
        if (p.silu != 0u) {
            y = y / (1.0 + exp(-y));
        }
        out[base + i] = y;
    }
}
