// affine: out[i] = x[i]·scale + shift, elementwise over the whole tensor
//   (UNet2DModel's center_input_sample: 2x − 1).
// Bindings: 0 x (read); 1 out (rw); 2 params. Workgroup: 64, 1-D over wid.x + wid.y·nwg.x.

struct Params { count: u32, scale: f32, shift: f32, _p: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i < p.count) {
        out[i] = x[i] * p.scale + p.shift;
    }
}
