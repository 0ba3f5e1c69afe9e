//! The fused scheduler update (`shaders/scheduler_step.wgsl`): guidance, x̂₀ and ε̂ from the model
//! output, clipping, and x_{t-1} from them (DDIM, DDPM, DPM-Solver++ and the Euler family), one
//! dispatch per step. Recorded by the GPU engine (`gpu::engine`).

use crate::kernel_params;

kernel_params!(SchedulerStepParams for "scheduler_step" {
    count: u32, guiding: u32, guidance: f32, clip: f32,
    x0_x: f32, x0_m: f32, eps_x: f32, eps_m: f32,
    c_x0: f32, c_eps: f32, c_x: f32, c_noise: f32,
    step: u32, c_h: f32, h_h: f32, h_x0: f32,
    h_x: f32, classifier: u32, pad1: u32, pad2: u32,
});
