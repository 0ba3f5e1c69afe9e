#![cfg(not(target_arch = "wasm32"))]
//! Whole DDIM / DDPM sampling loops against diffusers pipelines run on the fixture models with the
//! fixture's noise (tests/fixtures/trajectories.*), on the CPU and on the GPU engine.
//! Tolerance 1e-3 × max(1, max|ref|) on x_1 (after the first step) and on x_0.

mod common;

use common::*;
use ddim_webgpu::gpu::recording::GpuUNet;
use ddim_webgpu::gpu::sampler::GpuSampler;
use ddim_webgpu::sampler::{run_cpu, NoiseSource, RunPlan, SampleOptions, SamplerKind, Schedule, SchedulerConfig};
use ddim_webgpu::{Model, Tensor};

struct Case {
    name: String,
    model: Model,
    schedule: Schedule,
    opts: SampleOptions,
    x_t: Tensor,
    noise: Vec<Vec<f32>>,
    x_1: Tensor,
    x_0: Tensor,
}

fn cases() -> Vec<Case> {
    let all = load(&fixtures().join("trajectories.safetensors"));
    json("trajectories.json").as_array().unwrap().iter().map(|c| {
        let name = c["name"].as_str().unwrap().to_string();
        let model = Model::load_dir(&fixtures().join("models").join(c["model"].as_str().unwrap())).unwrap();
        let cfg: SchedulerConfig = serde_json::from_value(c["config"].clone()).unwrap();
        let kind = if c["scheduler"] == "ddpm" { SamplerKind::Ddpm } else { SamplerKind::Ddim };
        let x_t = all[&format!("{name}.x_T")].clone();
        let noise_t = &all[&format!("{name}.noise")];
        let per = x_t.len();
        let noise = noise_t.data.chunks(per).map(|c| c.to_vec()).collect();
        let labels = c["class_labels"].as_array().map(|a| a.iter().map(|v| v.as_u64().unwrap() as u32).collect());
        let opts = SampleOptions {
            kind, steps: c["num_inference_steps"].as_u64().unwrap() as usize, eta: c["eta"].as_f64().unwrap_or(0.0) as f32,
            seed: 0, batch: x_t.shape[0], class_labels: labels, guidance: c["guidance"].as_f64().unwrap_or(0.0) as f32,
        };
        Case { x_1: all[&format!("{name}.x_1")].clone(), x_0: all[&format!("{name}.x_0")].clone(), name, model,
               schedule: Schedule::new(cfg).unwrap(), opts, x_t, noise }
    }).collect()
}

fn plan(c: &Case) -> RunPlan {
    let noise = NoiseSource::Given { x_t: c.x_t.data.clone(), per_step: c.noise.clone() };
    RunPlan::new(&c.model, &c.schedule, &c.opts, noise, c.x_t.shape[2], c.x_t.shape[3]).unwrap()
}

#[test]
fn cpu_trajectories_match_diffusers() {
    let cases = cases();
    assert_eq!(cases.len(), 7);
    for c in &cases {
        let mut first = None;
        let x0 = run_cpu(&c.model, &plan(c), |info, x, _| {
            if info.index == 0 { first = Some(Tensor { shape: c.x_t.shape.clone(), data: x.to_vec() }); }
            true
        }).unwrap();
        assert_close(&format!("{} x_1 (cpu)", c.name), first.as_ref().unwrap(), &c.x_1, 1e-3);
        assert_close(&format!("{} x_0 (cpu)", c.name), &x0, &c.x_0, 1e-3);
    }
}

#[test]
fn gpu_trajectories_match_diffusers() {
    for c in &cases() {
        let mut engine = GpuEngine::new(gpu(), &c.model).unwrap();
        let mut s = GpuSampler::new(&mut engine, plan(c)).unwrap();
        s.step(&engine.gpu, |_| {}).unwrap();
        let x1 = pollster::block_on(s.read_x(&engine.gpu)).unwrap();
        assert_close(&format!("{} x_1 (gpu)", c.name), &x1, &c.x_1, 1e-3);
        while s.step(&engine.gpu, |_| {}).unwrap().is_some() {}
        let x0 = pollster::block_on(s.read_x(&engine.gpu)).unwrap();
        assert_close(&format!("{} x_0 (gpu)", c.name), &x0, &c.x_0, 1e-3);
    }
}
