// add: out[i] = a[i] + b[i], elementwise over tensors of one shape (the time embedding plus a
//   "timestep" class embedding).
// Bindings: 0 a, 1 b (read); 2 out (rw); 3 params. Workgroup: 64, 1-D over wid.x + wid.y·nwg.x.

struct Params { count: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i < p.count) {
        out[i] = a[i] + b[i];
    }
}
