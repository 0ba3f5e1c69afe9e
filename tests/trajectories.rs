#![cfg(not(target_arch = "wasm32"))]
//! Whole DDIM / DDPM sampling loops against diffusers pipelines run on the fixture models with the
//! fixture's noise (tests/fixtures/trajectories.*), through the run layer on both engines.
//! Measured error ~6e-6; tolerance 1e-4 × max(1, max|ref|) on x_1 (after the first step) and x_0.
//! Three cases use clip_sample = false, so x_0 is not saturated at ±1.

mod common;

use common::*;
use ddim_webgpu::gpu::engine::GpuEngine;
use ddim_webgpu::run::{run, ClassLabels, CpuEngine, Engine, Flow, GivenNoise, RunOptions, RunPlan, View};
use ddim_webgpu::sampler::{SamplerKind, SchedulerConfig};
use ddim_webgpu::{Model, Tensor};

const TOL: f32 = 1e-4;

struct Case {
    name: String,
    model: Model,
    plan: RunPlan,
    x_1: Tensor,
    x_0: Tensor,
}

fn cases() -> Vec<Case> {
    let all = load(&fixtures().join("trajectories.safetensors"));
    json("trajectories.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let model = Model::load_dir(&fixtures().join("models").join(c["model"].as_str().unwrap())).unwrap();
            let x_t = all[&format!("{name}.x_T")].clone();
            let mut opts = RunOptions::new()
                .scheduler(SchedulerConfig::from_value(c["config"].clone()).unwrap())
                .steps(c["num_inference_steps"].as_u64().unwrap() as usize)
                .eta(c["eta"].as_f64().unwrap_or(0.0) as f32)
                .guidance(c["guidance"].as_f64().unwrap_or(0.0) as f32)
                .noise(GivenNoise { x_t, per_step: Some(all[&format!("{name}.noise")].clone()), undo: None });
            if c["scheduler"] == "ddpm" {
                opts = opts.sampler(SamplerKind::Ddpm);
            }
            if let Some(labels) = c["class_labels"].as_array() {
                opts = opts.labels(ClassLabels::Each(labels.iter().map(|v| v.as_i64().unwrap()).collect()));
            }
            let plan = opts.plan(&model).unwrap();
            Case { x_1: all[&format!("{name}.x_1")].clone(), x_0: all[&format!("{name}.x_0")].clone(), name, model, plan }
        })
        .collect()
}

/// One body for both engines: x_1 read after the first step, x_0 at the end.
fn check<E: Engine>(engine: &mut E, c: &Case, label: &str) {
    let (x_1, x_0) = first_and_last(engine, &c.plan);
    assert_close(&format!("{} x_1 ({label})", c.name), &x_1, &c.x_1, TOL);
    assert_close(&format!("{} x_0 ({label})", c.name), &x_0, &c.x_0, TOL);
}

/// Each case on every engine (`every_engine`), one body.
#[test]
fn trajectories_match_diffusers_on_every_engine() {
    let cases = cases();
    assert_eq!(cases.len(), 10);
    assert!(cases.iter().filter(|c| c.x_0.max_abs() > 1.5).count() >= 3, "unclipped cases present");
    for c in &cases {
        for (label, mut engine) in every_engine(&c.model) {
            check(&mut engine, c, label);
        }
    }
}

/// A step hook that replaces x_t (what inpainting and inversion runs will do) takes effect on
/// every engine, and the engines still agree.
#[test]
fn write_x_hook_takes_effect_on_every_engine() {
    let model = Model::load_dir(&fixtures().join("models/tiny_attn")).unwrap();
    let plan = RunOptions::new().steps(3).batch(2).seed(5).plan(&model).unwrap();
    let half: Vec<f32> = plan.x_start.iter().map(|v| v * 0.5).collect();
    fn hooked<E: Engine>(engine: &mut E, plan: &RunPlan, x: &[f32]) -> Tensor {
        pollster::block_on(run(engine, plan, async |e: &mut E, info| {
            if info.index == 0 {
                e.write_x(x)?;
                assert_eq!(e.read(View::Xt).await?.data, x, "write_x is what read returns");
            }
            Ok(Flow::Continue)
        }))
        .unwrap()
    }
    let plain = pollster::block_on(ddim_webgpu::run::run_to_end(&mut CpuEngine::new(&model), &plan)).unwrap();
    let cpu = hooked(&mut CpuEngine::new(&model), &plan, &half);
    let gpu = hooked(&mut GpuEngine::new(gpu(), &model).unwrap(), &plan, &half);
    assert!(plain.max_abs_diff(&cpu) > 1e-2, "the hook changed the run");
    assert_close("hooked run (gpu vs cpu)", &gpu, &cpu, TOL);
    let e = pollster::block_on(run(&mut CpuEngine::new(&model), &plan, async |e: &mut CpuEngine, _| {
        e.write_x(&[0.0; 3])?;
        Ok(Flow::Continue)
    }))
    .unwrap_err();
    assert!(e.to_string().contains("write_x: 3 values"), "{e}");
}

/// The GPU engine's buffer ledger (what the browser's `stats()` reports): a second run of the same
/// shape makes no new buffers, reading frames back leaves nothing behind, destroy frees everything.
#[test]
fn gpu_runs_hold_a_constant_set_of_buffers() {
    let model = Model::load_dir(&fixtures().join("models/tiny_attn")).unwrap();
    let plan = RunOptions::new().steps(3).batch(2).seed(5).plan(&model).unwrap();
    let mut engine = GpuEngine::new(gpu(), &model).unwrap();
    let (weights, _) = engine.gpu().live_buffers();
    assert!(weights > 0, "the weights are counted");
    let read_every_step = async |e: &mut GpuEngine, _| {
        e.read(View::Xt).await?;
        Ok(Flow::Continue)
    };
    pollster::block_on(run(&mut engine, &plan, read_every_step)).unwrap();
    let after_one = engine.gpu().live_buffers();
    assert!(after_one.0 > weights, "the run's activations are counted");
    for _ in 0..3 {
        pollster::block_on(run(&mut engine, &plan, read_every_step)).unwrap();
    }
    assert_eq!(engine.gpu().live_buffers(), after_one, "later runs of one shape reuse every buffer");
    engine.gpu().destroy();
    assert_eq!(engine.gpu().live_buffers(), (0, 0));
    let e = pollster::block_on(ddim_webgpu::run::run_to_end(&mut engine, &plan)).unwrap_err();
    assert!(e.to_string().contains("the GPU device was destroyed"), "{e}");
    assert_eq!(engine.gpu().live_buffers(), (0, 0), "releasing after destroy does not wrap the counts");
}

/// The numerical guard: x_t going NaN mid-run is an error naming the first bad step, on every
/// engine (the GPU's step kernel records it with an atomic; host engines check after each update).
#[test]
fn a_non_finite_sample_is_reported_with_its_step() {
    let model = Model::load_dir(&fixtures().join("models/tiny_attn")).unwrap();
    let plan = RunOptions::new().steps(5).batch(2).seed(5).plan(&model).unwrap();
    fn poisoned<E: Engine>(engine: &mut E, plan: &RunPlan) -> String {
        let mut x = plan.x_start.clone();
        x[7] = f32::NAN;
        let r = pollster::block_on(run(engine, plan, async |e: &mut E, info| {
            if info.index == 1 {
                e.write_x(&x)?; // after step 2: step 3's update is the first to produce NaN
            }
            Ok(Flow::Continue)
        }));
        r.unwrap_err().to_string()
    }
    let expect = format!("x_t became NaN or Inf at step 3 of 5 (timestep {})", plan.steps[2].timestep);
    for (label, e) in [
        ("cpu", poisoned(&mut CpuEngine::new(&model), &plan)),
        ("reference", poisoned(&mut CpuEngine::reference(&model), &plan)),
        ("gpu", poisoned(&mut GpuEngine::new(gpu(), &model).unwrap(), &plan)),
    ] {
        assert!(e.starts_with(&expect), "{label}: {e}");
    }
    // The same engine runs cleanly afterwards: the guard is per run.
    let mut engine = GpuEngine::new(gpu(), &model).unwrap();
    poisoned(&mut engine, &plan);
    pollster::block_on(ddim_webgpu::run::run_to_end(&mut engine, &plan)).unwrap();
}
