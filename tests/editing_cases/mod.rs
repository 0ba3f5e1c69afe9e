//! The editing fixture cases (tests/fixtures/editing.*) as run options, shared by the native
//! (tests/editing.rs) and browser (tests/web.rs) suites.

use ddim_webgpu::run::options::Edit;
use ddim_webgpu::run::{ClassLabels, GivenNoise, RunOptions};
use ddim_webgpu::sampler::{SamplerKind, SchedulerConfig};
use ddim_webgpu::Tensor;

/// The options of case `c`: SDEdit, inversion or RePaint with diffusers' noise; `get(k)` is the
/// case's tensor `k`. An inversion's reconstruction is `options(..).reconstruction(x_T)`.
pub fn options(c: &serde_json::Value, get: &dyn Fn(&str) -> Tensor) -> RunOptions {
    let mut opts = RunOptions::new()
        .scheduler(SchedulerConfig::from_value(c["config"].clone()).unwrap())
        .steps(c["num_inference_steps"].as_u64().unwrap() as usize)
        .guidance(c["guidance"].as_f64().unwrap_or(0.0) as f32);
    if let Some(labels) = c["class_labels"].as_array() {
        opts = opts.labels(ClassLabels::Each(labels.iter().map(|v| v.as_i64().unwrap()).collect()));
    }
    let image = get("image");
    let count = |k: &str| c[k].as_u64().unwrap() as usize;
    match c["kind"].as_str().unwrap() {
        "img2img" => opts
            .sampler(c["sampler"].as_str().unwrap().parse().unwrap())
            .edit(Edit::Img2Img { image, strength: c["strength"].as_f64().unwrap() })
            .noise(GivenNoise { x_t: get("eps"), per_step: None, undo: None }),
        "invert" => opts.sampler(SamplerKind::Ddim).edit(Edit::Invert { image }),
        _ => opts
            .eta(c["eta"].as_f64().unwrap() as f32)
            .edit(Edit::Inpaint { image, mask: get("mask"), jump_length: count("jump_length"), jump_n_sample: count("jump_n_sample") })
            .noise(GivenNoise { x_t: get("x_T"), per_step: Some(get("step_noise")), undo: Some(get("undo_noise")) }),
    }
}
