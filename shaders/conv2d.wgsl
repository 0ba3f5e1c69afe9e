// conv2d: out[n,o,y,x] = (Σ w[o,i,ky,kx]·in[n,i,y·s+ky−pt, x·s+kx−pl] + b[o] + chan_add[n,o] + residual) / out_scale,
//   reading the input through an optional fused 2× nearest upsample (diffusers Upsample2D).
// Bindings: 0 x, 1 weight [O,I,K,K], 2 bias [O], 3 chan_add [N,O], 4 residual [N,O,OH,OW] (read); 5 out (rw); 6 params.
// Workgroup: 64 invocations, 1-D; each computes 4 output channels × 4 adjacent pixels of one row.

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, oh: u32, ow: u32, k: u32,
    stride: u32, pad_t: u32, pad_l: u32, up: u32,
    has_add: u32, has_res: u32, out_scale: f32, _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> chan_add: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let oxbs = (p.ow + 3u) / 4u;
    let ocbs = (p.co + 3u) / 4u;
    if (idx >= p.n * ocbs * p.oh * oxbs) {
        return;
    }
    let ox0 = (idx % oxbs) * 4u;
    let oy = (idx / oxbs) % p.oh;
    let oc0 = ((idx / (oxbs * p.oh)) % ocbs) * 4u;
    let n = idx / (oxbs * p.oh * ocbs);
    let eh = i32(p.h << p.up);
    let ew = i32(p.w << p.up);
    let kk = p.k * p.k;
    let wstride = p.ci * kk;
    // Four named accumulators (one per pixel, lanes = 4 output channels) rather than an indexed
    // array: a dynamically indexed private array lives in memory on GPUs and on CPU adapters alike.
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    let last = p.co * wstride - 1u;
    let ix0 = i32(ox0 * p.stride) - i32(p.pad_l);
    let step = i32(p.stride);
    for (var i = 0u; i < p.ci; i++) {
        let plane = (n * p.ci + i) * p.h * p.w;
        for (var ky = 0u; ky < p.k; ky++) {
            let iy = i32(oy * p.stride + ky) - i32(p.pad_t);
            if (iy < 0 || iy >= eh) {
                continue;
            }
            let row = plane + (u32(iy) >> p.up) * p.w;
            let wrow = (oc0 * p.ci + i) * kk + ky * p.k;
            for (var kx = 0u; kx < p.k; kx++) {
                let wi = wrow + kx;
                let wv = vec4<f32>(
                    select(0.0, weight[min(wi, last)], oc0 < p.co),
                    select(0.0, weight[min(wi + wstride, last)], oc0 + 1u < p.co),
                    select(0.0, weight[min(wi + 2u * wstride, last)], oc0 + 2u < p.co),
                    select(0.0, weight[min(wi + 3u * wstride, last)], oc0 + 3u < p.co));
                let c0 = ix0 + i32(kx);
                let c1 = c0 + step;
                let c2 = c1 + step;
                let c3 = c2 + step;
                a0 += wv * select(0.0, x[row + (u32(max(c0, 0)) >> p.up)], c0 >= 0 && c0 < ew);
                a1 += wv * select(0.0, x[row + (u32(max(c1, 0)) >> p.up)], c1 >= 0 && c1 < ew);
                a2 += wv * select(0.0, x[row + (u32(max(c2, 0)) >> p.up)], c2 >= 0 && c2 < ew);
                a3 += wv * select(0.0, x[row + (u32(max(c3, 0)) >> p.up)], c3 >= 0 && c3 < ew);
            }
        }
    }
    store(n, oc0, oy, ox0, a0);
    store(n, oc0, oy, ox0 + 1u, a1);
    store(n, oc0, oy, ox0 + 2u, a2);
    store(n, oc0, oy, ox0 + 3u, a3);
}

// Writes output channels oc0..oc0+3 of pixel (oy, ox): + bias, time-embedding add, residual, / scale.
fn store(n: u32, oc0: u32, oy: u32, ox: u32, acc: vec4<f32>) {
    if (ox >= p.ow) {
        return;
    }
    for (var m = 0u; m < 4u; m++) {
        let o = oc0 + m;
        if (o >= p.co) {
            return;
        }
        let oi = ((n * p.co + o) * p.oh + oy) * p.ow + ox;
        var v = acc[m] + bias[o];
        if (p.has_add != 0u) {
            v += chan_add[n * p.co + o];
        }
        if (p.has_res != 0u) {
            v += residual[oi];
        }
        out[oi] = v / p.out_scale;
    }
}
