// concat_channels: torch.cat([a, b], dim=1) for NCHW tensors (the U-Net's skip connections).
// Bindings: 0 a [N,CA,HW], 1 b [N,CB,HW] (read); 2 out [N,CA+CB,HW] (rw); 3 params.
// Workgroup: 64, one output element each, 1-D over wid.x + wid.y·nwg.x.

struct Params { n: u32, ca: u32, cb: u32, hw: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let c = p.ca + p.cb;
    if (i >= p.n * c * p.hw) {
        return;
    }
    let pix = i % p.hw;
    let ch = (i / p.hw) % c;
    let n = i / (p.hw * c);
    if (ch < p.ca) {
        out[i] = a[(n * p.ca + ch) * p.hw + pix];
    } else {
        out[i] = b[(n * p.cb + ch - p.ca) * p.hw + pix];
    }
}
