#![cfg(not(target_arch = "wasm32"))]
//! diffusers' DDIMScheduler / DDPMScheduler golden numbers (tests/fixtures/schedulers.*):
//! alphas_cumprod, timesteps, and single steps (mid-run and last) — on the CPU step rule and on
//! the fused WGSL update kernel.

mod common;
#[path = "op_cases/mod.rs"]
mod op_cases;

use common::*;
use ddim_webgpu::sampler::{SamplerKind, Schedule, Scheduler, SchedulerConfig};
use ddim_webgpu::Tensor;

fn schedule(case: &serde_json::Value) -> Schedule {
    Schedule::new(SchedulerConfig::from_value(case["config"].clone()).unwrap())
}

fn kind(case: &serde_json::Value) -> SamplerKind {
    if case["scheduler"] == "ddpm" {
        SamplerKind::Ddpm
    } else {
        SamplerKind::Ddim
    }
}

/// The public scheduler API, set up as the fixture's diffusers scheduler was.
fn scheduler(case: &serde_json::Value) -> Scheduler {
    let mut json = case["config"].clone();
    json["_class_name"] = if case["scheduler"] == "ddpm" { "DDPMScheduler" } else { "DDIMScheduler" }.into();
    let mut s = Scheduler::from_config(&json.to_string()).unwrap().with_eta(case["eta"].as_f64().unwrap_or(0.0) as f32);
    assert_eq!(s.kind, kind(case));
    s.set_timesteps(case["num_inference_steps"].as_u64().unwrap() as usize).unwrap();
    s
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

/// `Scheduler::step` at the fixture's timestep `t` against diffusers' `step` outputs.
fn step_check(name: &str, s: &Scheduler, all: &std::collections::HashMap<String, Tensor>, t: i64, prefix: &str) {
    let (x, m, noise) = (&all[&format!("{name}.sample")], &all[&format!("{name}.model_output")], &all[&format!("{name}.noise")]);
    let out = s.step(&m.data, t, &x.data, Some(&noise.data)).unwrap();
    let t = |data: Vec<f32>| Tensor { shape: x.shape.clone(), data };
    assert_close(&format!("{name}: {prefix}prev_sample"), &t(out.prev_sample), &all[&format!("{name}.{prefix}prev_sample")], 1e-5);
    assert_close(
        &format!("{name}: {prefix}pred_original_sample"),
        &t(out.pred_original_sample),
        &all[&format!("{name}.{prefix}pred_original_sample")],
        1e-5,
    );
}

#[test]
fn single_steps_match_diffusers() {
    let all = load(&fixtures().join("schedulers.safetensors"));
    let cases = json("schedulers.json");
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let s = scheduler(case);
        let ts = s.timesteps();
        assert_eq!(ts.iter().map(|&t| t as f32).collect::<Vec<_>>(), all[&format!("{name}.timesteps")].data, "{name}: timesteps");
        step_check(name, &s, &all, ts[1], "");
        step_check(name, &s, &all, *ts.last().unwrap(), "last_");
    }
}

#[test]
fn scheduler_api_refuses_what_it_cannot_do() {
    let mut s = Scheduler::from_config(r#"{"_class_name": "DDPMScheduler"}"#).unwrap();
    s.set_timesteps(10).unwrap();
    let x = vec![0.5f32; 6];
    // DDPM adds noise at t > 0: leaving it out is an error, not zeros.
    assert!(s.step(&x, s.timesteps()[0], &x, None).unwrap_err().to_string().contains("adds noise"));
    // ... and not at t = 0.
    s.step(&x, 0, &x, None).unwrap();
    assert!(s.step(&x, 1, &x, None).unwrap_err().to_string().contains("not one of the timesteps"));
    assert!(s.step(&x[..3], 0, &x, None).unwrap_err().to_string().contains("model_output has 3"));
    assert!(s.add_noise(&x, &x, 1000).unwrap_err().to_string().contains("outside"));
}

#[test]
fn add_noise_matches_diffusers() {
    let all = load(&fixtures().join("schedulers.safetensors"));
    let mut checked = 0;
    for case in json("schedulers.json").as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let Some(want) = all.get(&format!("{name}.noisy")) else { continue };
        let s = scheduler(case);
        let t = case["add_noise_t"].as_i64().unwrap();
        let got = s.add_noise(&all[&format!("{name}.sample")].data, &all[&format!("{name}.noise")].data, t).unwrap();
        assert_close(&format!("{name}: add_noise at t = {t}"), &Tensor { shape: want.shape.clone(), data: got }, want, 1e-6);
        checked += 1;
    }
    assert!(checked >= 10, "add_noise fixtures missing (regenerate tests/fixtures)");
}

#[test]
fn scheduler_step_kernel_matches_cpu_rule() {
    let model = ddim_webgpu::Model::load_dir(&fixtures().join("models/class_f16")).unwrap();
    pollster::block_on(op_cases::scheduler_step_gpu_vs_cpu(gpu(), &model)).unwrap();
}
