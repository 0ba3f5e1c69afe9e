// upfirdn2d: diffusers' upfirdn2d_native with a separable kernel k⊗k of up to 4 taps, on every
//   plane: the input upsampled by inserting up − 1 zeros after each sample, padded with pad0
//   zeros before (pad1 after, implicit in oh/ow), correlated with the flipped kernel, every
//   down-th value kept. Plain and FIR resampling of the resnets and the Skip blocks' image path.
// Bindings: 0 x [planes, h, w] (read); 1 out [planes, oh, ow] (rw); 2 params.
// Workgroup: 64, one output value each, 1-D over wid.x + wid.y·nwg.x.

struct Params {
    planes: u32, h: u32, w: u32, oh: u32,
    ow: u32, up: u32, down: u32, pad0: u32,
    taps: u32, _p0: u32, _p1: u32, _p2: u32,
    k: vec4<f32>,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

// The flipped kernel's tap i (torch.flip before F.conv2d's correlation).
fn tap(i: u32) -> f32 {
    return p.k[p.taps - 1u - i];
}

// The input index along one axis feeding padded position q, or −1 where the signal is zero.
fn source(q: u32, len: u32) -> i32 {
    if (q < p.pad0) {
        return -1;
    }
    let u = q - p.pad0;
    if (u % p.up != 0u || u / p.up >= len) {
        return -1;
    }
    return i32(u / p.up);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.planes * p.oh * p.ow) {
        return;
    }
    let plane = i / (p.oh * p.ow);
    let oy = (i / p.ow) % p.oh;
    let ox = i % p.ow;
    var s = 0.0;
    for (var a = 0u; a < p.taps; a++) {
        let iy = source(oy * p.down + a, p.h);
        if (iy < 0) {
            continue;
        }
        for (var b = 0u; b < p.taps; b++) {
            let ix = source(ox * p.down + b, p.w);
            if (ix >= 0) {
                s += tap(a) * tap(b) * x[(plane * p.h + u32(iy)) * p.w + u32(ix)];
            }
        }
    }
    out[i] = s;
}
