// scheduler_step: one sampler update (DDIM, DDPM, Euler, Heun, DPM-Solver++), fused with
//   classifier-free guidance. With m the (guided) model output and h the solver's history:
//   x0 = x0_x·x + x0_m·m (clipped), eps = eps_x·x + eps_m·m,
//   x ← c_x0·x0 + c_eps·eps + c_x·x + c_noise·noise + c_h·h, h ← h_h·h + h_x0·x0 + h_x·x;
//   the predicted x0 and the noise prediction eps are kept for display.
// Numerical guard: where the (guided) model output or the new x is NaN or Inf, the first such
// step's index goes into `bad_step` (atomicMin; u32::MAX = none), read once at the end of a run.
// Tested by bits, not x != x: WGSL lets compilers assume finite floats.
// Classifier guidance (`classifier` = 1): the term s·σ_t·∇ₓ log p(y | x_t, t) the classifier's
// recorded backward left in `classifier_term` is subtracted from the guided output first.
// Bindings: 0 model_out [G·count] (read), 1 noise [count] (read); 2 x (rw, in place), 3 x0 (rw);
// 4 params; 5 bad_step (atomic u32); 6 h (rw, in place); 7 eps (rw); 8 classifier_term (read).
// Workgroup: 64, one element each, 1-D over wid.x + wid.y·nwg.x.

struct Params {
    count: u32, guiding: u32, guidance: f32, clip: f32,
    x0_x: f32, x0_m: f32, eps_x: f32, eps_m: f32,
    c_x0: f32, c_eps: f32, c_x: f32, c_noise: f32,
    step: u32, c_h: f32, h_h: f32, h_x0: f32,
    h_x: f32, classifier: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<storage, read> model_out: array<f32>;
@group(0) @binding(1) var<storage, read> noise: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> x0_out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read_write> bad_step: atomic<u32>;
@group(0) @binding(6) var<storage, read_write> h: array<f32>;
@group(0) @binding(7) var<storage, read_write> eps_out: array<f32>;
@group(0) @binding(8) var<storage, read> classifier_term: array<f32>;

fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.count) {
        return;
    }
    var m = model_out[i];
    if (p.guiding != 0u) {
        // Ho & Salimans: (1 + w)·ε(c) − w·ε(∅); the unconditional half follows the conditional one.
        m = (1.0 + p.guidance) * m - p.guidance * model_out[i + p.count];
    }
    if (p.classifier != 0u) {
        m -= classifier_term[i];
    }
    let xv = x[i];
    var x0 = p.x0_x * xv + p.x0_m * m;
    let eps = p.eps_x * xv + p.eps_m * m;
    if (p.clip > 0.0) {
        x0 = clamp(x0, -p.clip, p.clip);
    }
    let hv = h[i];
    let x_new = p.c_x0 * x0 + p.c_eps * eps + p.c_x * xv + p.c_noise * noise[i] + p.c_h * hv;
    if (!is_finite(m) || !is_finite(x_new)) {
        atomicMin(&bad_step, p.step);
    }
    x[i] = x_new;
    x0_out[i] = x0;
    eps_out[i] = eps;
    h[i] = p.h_h * hv + p.h_x0 * x0 + p.h_x * xv;
}
