#![cfg(not(target_arch = "wasm32"))]
//! Branching runs (`run::branch`): a node keeps the engine's state after an evaluation; a branch
//! that changes nothing reproduces the unforked run exactly (bit for bit, on every engine, with
//! noise still to come: DDPM-like η > 0, and DPM-Solver++'s history); one that changes the class,
//! guidance, η or the seed of the noise to come differs from there; one that changes the sampler
//! carries x_t into the new sampler's sample space at the node's level and lands where the
//! deterministic ODE leads; what cannot branch is refused by name.

mod common;

use std::sync::Arc;

use common::*;
use ddim_webgpu::run::branch::{EngineState, Node};
use ddim_webgpu::run::{self, ClassLabels, Engine, Flow, RunOptions};
use ddim_webgpu::sampler::SamplerKind;
use ddim_webgpu::{Model, Tensor};

fn bundled() -> Model {
    Model::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/mnist-cond")).unwrap()
}

fn base(kind: SamplerKind) -> RunOptions {
    RunOptions::new().sampler(kind).steps(8).batch(2).seed(11).labels(ClassLabels::Each(vec![3, 7])).guidance(2.0)
}

/// Runs `opts` to the end, keeping a node after every evaluation.
fn run_keeping_nodes<E: Engine>(engine: &mut E, model: &Model, opts: &RunOptions) -> (Tensor, Vec<Arc<Node>>) {
    let plan = opts.plan(model).unwrap();
    let mut nodes = Vec::new();
    let x = pollster::block_on(run::run(engine, &plan, async |e, info| {
        let state = EngineState::save(e).await?;
        nodes.push(Arc::new(Node::new(&plan, info.index, state)?));
        Ok(Flow::Continue)
    }))
    .unwrap();
    (x, nodes)
}

fn run_to_end<E: Engine>(engine: &mut E, model: &Model, opts: &RunOptions) -> Tensor {
    pollster::block_on(run::run_to_end(engine, &opts.plan(model).unwrap())).unwrap()
}

#[test]
fn a_branch_that_changes_nothing_reproduces_the_run_exactly_on_every_engine() {
    let model = bundled();
    for (label, mut engine) in every_engine(&model) {
        for (kind, eta) in [(SamplerKind::Ddim, 0.7), (SamplerKind::DpmPlusPlus2M, 0.0), (SamplerKind::Heun, 0.0)] {
            let opts = if eta > 0.0 { base(kind).eta(eta) } else { base(kind) };
            let (x, nodes) = run_keeping_nodes(&mut engine, &model, &opts);
            for k in [0, 3, nodes.len() - 2] {
                let again = run_to_end(&mut engine, &model, &opts.clone().resume(nodes[k].clone()));
                assert_eq!(again.data, x.data, "{label} {kind:?}: resumed after evaluation {} of {}", k + 1, nodes.len());
            }
            // The noise still to come from another seed: the same up to the node, different after.
            if eta > 0.0 {
                let other = run_to_end(&mut engine, &model, &opts.clone().seed(12).resume(nodes[3].clone()));
                assert!(other.max_abs_diff(&x) > 0.05, "{label}: another seed for the noise to come changes the image");
            }
        }
    }
}

#[test]
fn a_branch_that_changes_class_or_guidance_differs_from_the_node_on() {
    let model = bundled();
    let mut engine = ddim_webgpu::run::CpuEngine::new(&model);
    let (x, nodes) = run_keeping_nodes(&mut engine, &model, &base(SamplerKind::Ddim));
    let other_class =
        run_to_end(&mut engine, &model, &base(SamplerKind::Ddim).labels(ClassLabels::Each(vec![3, 1])).resume(nodes[1].clone()));
    let item = x.data.len() / 2;
    assert_eq!(other_class.data[..item], x.data[..item], "item 0 kept its class: the same image");
    assert!(other_class.max_abs_diff(&x) > 0.1, "item 1's class changed at step 2: another image");
    let unguided = run_to_end(&mut engine, &model, &base(SamplerKind::Ddim).guidance(0.0).resume(nodes[1].clone()));
    assert!(unguided.max_abs_diff(&x) > 0.05);
    // A late branch changes less than an early one.
    let late = run_to_end(&mut engine, &model, &base(SamplerKind::Ddim).labels(ClassLabels::Each(vec![3, 1])).resume(nodes[6].clone()));
    let diff = |a: &Tensor| a.data[item..].iter().zip(&x.data[item..]).map(|(p, q)| (p - q).abs()).sum::<f32>();
    assert!(diff(&late) < diff(&other_class), "late {} < early {}", diff(&late), diff(&other_class));
}

#[test]
fn a_branch_to_another_sampler_continues_the_same_ode() {
    let model = bundled();
    let mut engine = ddim_webgpu::run::CpuEngine::new(&model);
    let steps = 40;
    let ddim = base(SamplerKind::Ddim).steps(steps);
    let (x, nodes) = run_keeping_nodes(&mut engine, &model, &ddim);
    // From DDIM's node at evaluation 20, Euler's remaining 20 steps (its sample space is x/√ᾱ):
    // the same deterministic ODE, so near DDIM's own end; without the change of space it is not.
    let euler = run_to_end(&mut engine, &model, &base(SamplerKind::Euler).steps(steps).resume(nodes[19].clone()));
    let other_seed = run_to_end(&mut engine, &model, &ddim.clone().seed(99));
    let (near, far) = (euler.max_abs_diff(&x), other_seed.max_abs_diff(&x));
    assert!(near < 0.25 * far, "Euler from DDIM's node ends {near} from DDIM's image (another seed: {far})");
    // And back: DDIM from Euler's node.
    let (xe, euler_nodes) = run_keeping_nodes(&mut engine, &model, &base(SamplerKind::Euler).steps(steps));
    let back = run_to_end(&mut engine, &model, &ddim.clone().resume(euler_nodes[19].clone()));
    assert!(back.max_abs_diff(&xe) < 0.25 * far, "DDIM from Euler's node: {}", back.max_abs_diff(&xe));
    // A node of the branch branches again (its nodes count in the whole run's evaluations).
    let plan = base(SamplerKind::Euler).steps(steps).resume(nodes[19].clone()).plan(&model).unwrap();
    assert_eq!(plan.steps.len(), steps - 20);
}

#[test]
fn what_cannot_branch_is_refused_by_name() {
    let model = bundled();
    let mut engine = ddim_webgpu::run::CpuEngine::new(&model);
    let (_, nodes) = run_keeping_nodes(&mut engine, &model, &base(SamplerKind::Ddim));
    let says = |opts: RunOptions, want: &str| {
        let e = opts.plan(&model).unwrap_err().to_string();
        assert!(e.contains(want), "{want:?} not in: {e}");
    };
    says(base(SamplerKind::Ddim).batch(3).labels(ClassLabels::All(3)).resume(nodes[2].clone()), "keep the batch");
    says(base(SamplerKind::Ddim).resume(nodes[7].clone()), "last evaluation");
    says(base(SamplerKind::Host("UniPCMultistepScheduler")).resume(nodes[2].clone()), "fused samplers");
    says(base(SamplerKind::Ddim).steps(7).resume(nodes[2].clone()), "no step at the node's timestep");
    let (_, heun) = run_keeping_nodes(&mut engine, &model, &base(SamplerKind::Heun));
    says(base(SamplerKind::Ddim).resume(heun[0].clone()), "between Heun's two evaluations");
    // After a whole Heun step, another sampler may take over.
    base(SamplerKind::Ddim).resume(heun[1].clone()).plan(&model).unwrap();
}
