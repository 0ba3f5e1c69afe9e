// divide_by_timestep: out[n, …] = x[n, …] / t[n] (a Fourier, score-SDE model's output over its σ,
//   UNet2DModel's `sample / timesteps`).
// Bindings: 0 x [N, per] (read), 1 t [N] (read); 2 out (rw); 3 params.
// Workgroup: 64, 1-D over wid.x + wid.y·nwg.x.

struct Params { count: u32, per: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> t: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i < p.count) {
        out[i] = x[i] / t[i / p.per];
    }
}
