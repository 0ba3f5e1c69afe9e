// group_norm: torch group_norm (biased variance), optionally followed by SiLU, in three entry points
// with no workgroup memory and no barriers (on the CPU adapters a barrier suspends every lane
// group of the workgroup; a 256-wide tree reduction cost more than the whole rest of the op):
//   stats:   per (n, group, chunk of CHUNK elements): the chunk's mean and M2 (two passes, in cache)
//   combine: per (n, group): Chan et al.'s merge of its chunks → (mean, 1/√(var + eps))
//   apply:   per element: (x − mean)·inv·γ + β, then SiLU
// Bindings: 0 x [N,C,HW], 1 gamma [C], 2 beta [C] (read); 3 out, 5 partial [N·G·chunks] vec2,
//   6 moments [N·G] vec2 (rw); 4 params. Workgroups: 64 invocations, index = gid.x + gid.y·nwg.x·64.

struct Params { n: u32, c: u32, hw: u32, groups: u32, eps: f32, silu: u32, chunks: u32, _p: u32 }

const CHUNK: u32 = 1024u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read_write> partial: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> moments: array<vec2<f32>>;

fn span() -> u32 {
    return (p.c / p.groups) * p.hw; // groups are contiguous in NCHW
}

@compute @workgroup_size(64)
fn stats(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if (idx >= p.n * p.groups * p.chunks) {
        return;
    }
    let g = idx / p.chunks;
    let start = (idx % p.chunks) * CHUNK;
    let end = min(start + CHUNK, span());
    let base = g * span();
    var s = 0.0;
    for (var i = start; i < end; i++) {
        s += x[base + i];
    }
    let mean = s / f32(end - start);
    var q = 0.0;
    for (var i = start; i < end; i++) {
        let d = x[base + i] - mean;
        q += d * d;
    }
    partial[idx] = vec2<f32>(mean, q);
}

@compute @workgroup_size(64)
fn combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = gid.x + gid.y * nwg.x * 64u;
    if (g >= p.n * p.groups) {
        return;
    }
    var count = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var j = 0u; j < p.chunks; j++) {
        let part = partial[g * p.chunks + j];
        let nb = f32(min(CHUNK, span() - j * CHUNK));
        let total = count + nb;
        let delta = part.x - mean;
        mean += delta * nb / total;
        m2 += part.y + delta * delta * count * nb / total;
        count = total;
    }
    moments[g] = vec2<f32>(mean, inverseSqrt(m2 / count + p.eps));
}

@compute @workgroup_size(64)
fn apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if (idx >= p.n * p.c * p.hw) {
        return;
    }
    let m = moments[idx / span()];
    let ch = (idx / p.hw) % p.c;
    var y = (x[idx] - m.x) * m.y * gamma[ch] + beta[ch];
    if (p.silu != 0u) {
        y = y / (1.0 + exp(-y));
    }
    out[idx] = y;
}
