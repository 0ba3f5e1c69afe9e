#![cfg(not(target_arch = "wasm32"))]
//! The fast solvers (Euler, Heun, DPM-Solver++) against diffusers (tests/fixtures/solvers.*, made
//! by make_fixtures.py): every evaluation's integer model timestep exactly (fractional Karras
//! ones to 2 ulp), the sigmas and init_noise_sigma to 1 ulp (torch's f32 pow); whole runs (scale_model_input, x_T · init_noise_sigma, guidance, the solver history)
//! on the three engines within 1e-4 × max(1, max|ref|), as the DDIM/DDPM trajectories.

mod common;

use common::*;
use ddim_webgpu::run::{ClassLabels, Engine, GivenNoise, RunOptions, RunPlan};
use ddim_webgpu::sampler::{SamplerKind, Schedule, SchedulerConfig};
use ddim_webgpu::{Model, Tensor};

const TOL: f32 = 1e-4;

struct Case {
    name: String,
    kind: SamplerKind,
    n: usize,
    config: SchedulerConfig,
    model: Model,
    plan: RunPlan,
    fixture: std::collections::HashMap<String, Tensor>,
    json: serde_json::Value,
}

impl Case {
    fn get(&self, k: &str) -> &Tensor {
        &self.fixture[&format!("{}.{k}", self.name)]
    }
}

fn cases() -> Vec<Case> {
    let all = load(&fixtures().join("solvers.safetensors"));
    json("solvers.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let kind: SamplerKind = c["sampler"].as_str().unwrap().parse().unwrap();
            let n = c["num_inference_steps"].as_u64().unwrap() as usize;
            let config = SchedulerConfig::from_value(c["config"].clone()).unwrap();
            let model = Model::load_dir(&fixtures().join("models").join(c["model"].as_str().unwrap())).unwrap();
            let mut opts = RunOptions::new()
                .sampler(kind)
                .scheduler(config.clone())
                .steps(n)
                .guidance(c["guidance"].as_f64().unwrap_or(0.0) as f32)
                .noise(GivenNoise { x_t: all[&format!("{name}.x_T")].clone(), per_step: None, undo: None });
            if let Some(labels) = c["class_labels"].as_array() {
                opts = opts.labels(ClassLabels::Each(labels.iter().map(|v| v.as_i64().unwrap()).collect()));
            }
            let plan = opts.plan(&model).unwrap();
            Case { name, kind, n, config, model, plan, fixture: all.clone(), json: c.clone() }
        })
        .collect()
}

#[test]
fn timesteps_sigmas_and_init_noise_sigma_are_diffusers_exactly() {
    let cases = cases();
    assert_eq!(cases.len(), 10);
    for c in &cases {
        let schedule = Schedule::new(c.config.for_sampler(c.kind));
        // One plan step per U-Net evaluation, at diffusers' model timestep.
        assert_eq!(c.plan.steps.len(), c.json["evaluations"].as_u64().unwrap() as usize, "{}: evaluations", c.name);
        // Integer timesteps exactly; fractional ones (Karras sigmas mapped back to t through
        // log σ, which inherits torch's ≤ 1 ulp σ) to 2 ulp.
        let ts: Vec<f32> = c.plan.steps.iter().map(|s| s.t_model).collect();
        let want = &c.get("timesteps").data;
        assert_eq!(ts.len(), want.len(), "{}: timesteps", c.name);
        for (a, b) in ts.iter().zip(want) {
            let ulps = if b.fract() == 0.0 { 0 } else { 2 };
            assert!(a.to_bits().abs_diff(b.to_bits()) <= ulps, "{}: timesteps {ts:?} vs diffusers {want:?}", c.name);
        }
        let sigmas = match c.kind {
            SamplerKind::DpmPlusPlus2M => schedule.dpm_sigmas(c.n).unwrap().1,
            SamplerKind::Euler => schedule.euler_sigmas(c.n, c.config.final_sigma_zero).unwrap().1,
            _ => {
                // Heun's sigmas interleaved as diffusers stores them: s0, s1, s1, …, s_{n−1}, s_{n−1}, 0.
                let s = schedule.euler_sigmas(c.n, true).unwrap().1;
                let mut out = vec![s[0]];
                s[1..c.n].iter().for_each(|&v| out.extend([v, v]));
                out.push(s[c.n]);
                out
            }
        };
        // torch computes σ_t = ((1 − ᾱ)/ᾱ) ** 0.5 with a vectorised pow of ≤ 1 ulp error; this
        // engine takes the correctly rounded square root of the same bit-identical quotient.
        let want = &c.get("sigmas").data;
        assert_eq!(sigmas.len(), want.len(), "{}: sigmas", c.name);
        for (i, (a, b)) in sigmas.iter().zip(want).enumerate() {
            assert!(a.to_bits().abs_diff(b.to_bits()) <= 1, "{}: sigma {i}: {a} vs diffusers {b}", c.name);
        }
        let init = schedule.init_noise_sigma(c.kind, c.n).unwrap();
        let want = c.json["init_noise_sigma"].as_f64().unwrap() as f32;
        assert!(init.to_bits().abs_diff(want.to_bits()) <= 1, "{}: init_noise_sigma {init} vs diffusers {want}", c.name);
    }
}

fn check<E: Engine>(engine: &mut E, c: &Case, label: &str) {
    let (x_1, x_0) = first_and_last(engine, &c.plan);
    assert_close(&format!("{} x_1 ({label})", c.name), &x_1, c.get("x_1"), TOL);
    assert_close(&format!("{} x_0 ({label})", c.name), &x_0, c.get("x_0"), TOL);
}

/// Each case on every engine (`every_engine`), one body.
#[test]
fn solver_runs_match_diffusers_on_every_engine() {
    for c in &cases() {
        for (label, mut engine) in every_engine(&c.model) {
            check(&mut engine, c, label);
        }
    }
}
