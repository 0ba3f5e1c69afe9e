// avg_pool2d: F.avg_pool2d(x, k, stride=k) (floor: rows and columns that fill no window are
//   dropped) and its input gradient (`backward`: each output's gradient spread evenly over its
//   window, 0 on the dropped rows and columns). The classifier's pooling (classifier guidance).
// Bindings: 0 input (read: x, or the output gradient g); 1 out (rw); 2 params.
// Workgroup: 64, one output element each, 1-D over wid.x + wid.y·nwg.x.

struct Params { planes: u32, h: u32, w: u32, oh: u32, ow: u32, kh: u32, kw: u32, _p: u32 }

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let per = p.oh * p.ow;
    if (i >= p.planes * per) {
        return;
    }
    let plane = i / per;
    let oy = (i % per) / p.ow;
    let ox = i % p.ow;
    var s = 0.0;
    for (var y = oy * p.kh; y < (oy + 1u) * p.kh; y++) {
        let row = (plane * p.h + y) * p.w;
        for (var x = ox * p.kw; x < (ox + 1u) * p.kw; x++) {
            s += src[row + x];
        }
    }
    out[i] = s / f32(p.kh * p.kw);
}

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let per = p.h * p.w;
    if (i >= p.planes * per) {
        return;
    }
    let plane = i / per;
    let y = (i % per) / p.w;
    let x = i % p.w;
    var v = 0.0;
    if (y < p.oh * p.kh && x < p.ow * p.kw) {
        v = src[(plane * p.oh + y / p.kh) * p.ow + x / p.kw] / f32(p.kh * p.kw);
    }
    out[i] = v;
}
