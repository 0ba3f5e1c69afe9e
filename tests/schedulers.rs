#![cfg(not(target_arch = "wasm32"))]
//! diffusers' DDIMScheduler / DDPMScheduler golden numbers (tests/fixtures/schedulers.*):
//! alphas_cumprod, timesteps, and single steps (mid-run and last) — on the CPU step rule and on
//! the fused WGSL update kernel.

mod common;

use common::*;
use ddim_webgpu::sampler::{SamplerKind, Schedule, SchedulerConfig};
use ddim_webgpu::Tensor;

fn schedule(case: &serde_json::Value) -> Schedule {
    let cfg: SchedulerConfig = serde_json::from_value(case["config"].clone()).unwrap();
    Schedule::new(cfg).unwrap()
}

fn kind(case: &serde_json::Value) -> SamplerKind {
    if case["scheduler"] == "ddpm" { SamplerKind::Ddpm } else { SamplerKind::Ddim }
}

#[test]
fn alphas_cumprod_and_timesteps_match_diffusers() {
    let all = load(&fixtures().join("schedulers.safetensors"));
    for case in json("schedulers.json").as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let s = schedule(case);
        let want = &all[&format!("{name}.alphas_cumprod")];
        let got = Tensor { shape: want.shape.clone(), data: s.alphas_cumprod.clone() };
        // Bit-exact: torch.linspace in f32 and a float64 running product, reproduced.
        assert_eq!(got.max_abs_diff(want), 0.0, "{name}: alphas_cumprod");
        let n = case["num_inference_steps"].as_u64().unwrap() as usize;
        let ts: Vec<f32> = s.timesteps(n).unwrap().iter().map(|&t| t as f32).collect();
        assert_eq!(ts, all[&format!("{name}.timesteps")].data, "{name}: timesteps");
    }
}

fn step_check(name: &str, s: &Schedule, case: &serde_json::Value, all: &std::collections::HashMap<String, Tensor>, index: usize, prefix: &str) {
    let n = case["num_inference_steps"].as_u64().unwrap() as usize;
    let eta = case["eta"].as_f64().unwrap_or(0.0) as f32;
    let steps = s.steps(kind(case), n, eta).unwrap();
    let step = steps[index];
    let (x, m, noise) = (&all[&format!("{name}.sample")], &all[&format!("{name}.model_output")], &all[&format!("{name}.noise")]);
    let mut prev = x.clone();
    let mut x0 = x.clone();
    for i in 0..x.len() {
        (prev.data[i], x0.data[i]) = step.coeffs.apply(x.data[i], m.data[i], noise.data[i]);
    }
    assert_close(&format!("{name}: {prefix}prev_sample"), &prev, &all[&format!("{name}.{prefix}prev_sample")], 1e-5);
    assert_close(&format!("{name}: {prefix}pred_original_sample"), &x0, &all[&format!("{name}.{prefix}pred_original_sample")], 1e-5);
}

#[test]
fn single_steps_match_diffusers() {
    let all = load(&fixtures().join("schedulers.safetensors"));
    let cases = json("schedulers.json");
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let s = schedule(case);
        let n = case["num_inference_steps"].as_u64().unwrap() as usize;
        step_check(name, &s, case, &all, 1, "");
        step_check(name, &s, case, &all, n - 1, "last_");
    }
}

#[test]
fn ddim_step_kernel_matches_cpu_rule() {
    use ddim_webgpu::gpu::sampler::GpuSampler;
    use ddim_webgpu::sampler::{NoiseSource, RunPlan, SampleOptions};
    // A full GPU DDIM run with eta > 0 and guidance is covered by the trajectory tests; here the
    // kernel on its own: 3 steps of the class fixture model through both engines from the same noise.
    let model = ddim_webgpu::Model::load_dir(&fixtures().join("models/class_f16")).unwrap();
    let s = Schedule::new(SchedulerConfig { clip_sample: true, prediction_type: "v_prediction".into(), ..Default::default() }).unwrap();
    let opts = SampleOptions { steps: 3, eta: 0.7, batch: 3, class_labels: Some(vec![0, 1, 2]), guidance: 1.5, seed: 9, ..Default::default() };
    let cpu = ddim_webgpu::sampler::run_cpu(&model, &RunPlan::new(&model, &s, &opts, NoiseSource::Seed(9), 8, 8).unwrap(), |_, _, _| true).unwrap();
    let mut engine = ddim_webgpu::gpu::recording::GpuUNet::new(gpu(), &model).unwrap();
    let mut g = GpuSampler::new(&mut engine, RunPlan::new(&model, &s, &opts, NoiseSource::Seed(9), 8, 8).unwrap()).unwrap();
    while g.step(&engine.gpu, |_| {}).unwrap().is_some() {}
    let got = pollster::block_on(g.read_x(&engine.gpu)).unwrap();
    assert_close("gpu vs cpu sampler (v-pred, eta 0.7, cfg 1.5)", &got, &cpu, 1e-4);
}
