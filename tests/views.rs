#![cfg(not(target_arch = "wasm32"))]
//! The views an engine keeps besides x_t: `View::Eps`, the predicted noise of the last evaluation,
//! is on every engine the guided model output the step used (DDIM on an ε-model: ε̂ = m̃), and the
//! guidance views its parts ε(c), ε(∅) and w·(ε(c) − ε(∅)), each computed here independently from
//! two reference forwards: 1e-4 × max|ref|.

mod common;

use common::*;
use ddim_webgpu::run::{self, ClassLabels, Engine, Flow, RunOptions, View};
use ddim_webgpu::sampler::SamplerKind;
use ddim_webgpu::{Error, Model, Tensor};

#[test]
fn eps_view_is_the_guided_model_output_on_every_engine() {
    let model = Model::load_dir(&fixtures().join("models/class_f16")).unwrap();
    let (labels, w) = (vec![1u32, 3], 1.5f32);
    let opts = RunOptions::new().sampler(SamplerKind::Ddim).steps(3).batch(2).seed(4);
    let plan = opts.labels(ClassLabels::Each(vec![1, 3])).guidance(w).plan(&model).unwrap();
    let x = Tensor::new(plan.shape.to_vec(), plan.x_start.clone()).unwrap();
    let t = vec![plan.steps[0].t_model; 2];
    let null = vec![model.config.num_class_embeds.unwrap() as u32 - 1; 2];
    let m_c = ddim_webgpu::reference::forward(&model, &x, &t, Some(&labels)).unwrap();
    let m_u = ddim_webgpu::reference::forward(&model, &x, &t, Some(&null)).unwrap();
    let want = Tensor::new(x.shape.clone(), m_c.data.iter().zip(&m_u.data).map(|(c, u)| (1.0 + w) * c - w * u).collect()).unwrap();
    let term = Tensor::new(x.shape.clone(), m_c.data.iter().zip(&m_u.data).map(|(c, u)| w * (c - u)).collect()).unwrap();
    let views = [(View::Eps, &want), (View::EpsCond, &m_c), (View::EpsUncond, &m_u), (View::Guidance, &term)];
    for (label, mut engine) in every_engine(&model) {
        let mut got = Vec::new();
        let e = pollster::block_on(run::run(&mut engine, &plan, async |e, _| {
            for (view, _) in views {
                got.push(e.read(view).await?);
            }
            Ok(Flow::Stop)
        }))
        .unwrap_err();
        assert!(matches!(e, Error::Cancelled), "{label}: {e}");
        for ((view, want), got) in views.iter().zip(&got) {
            assert_close_rel(&format!("{} view after step 1 ({label})", view.as_str()), got, want, 1e-4);
        }
    }
    // Without guidance there is no unconditional half: those views are refused by name.
    let plan = RunOptions::new().steps(2).batch(2).labels(ClassLabels::Each(vec![1, 3])).plan(&model).unwrap();
    for view in [View::EpsUncond, View::Guidance] {
        let e = view.check(&plan).unwrap_err();
        assert!(e.to_string().contains(view.as_str()) && e.to_string().contains("guidance"), "{e}");
    }
    View::EpsCond.check(&plan).unwrap();
}
