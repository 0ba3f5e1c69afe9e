#![cfg(not(target_arch = "wasm32"))]
//! The noise-aware classifier (classifier guidance): its logits and scaled input gradient
//! scale·∇ₓ log p(y | x, t) on the three engines against torch.autograd
//! (tests/fixtures/classifier.safetensors, `make_fixtures.py --classifier-only`): a small random
//! classifier of odd shape (13×13, 3 channels, two layers a level, floor pooling) and, where it
//! is exported, the bundled one. Tolerance 1e-4 × max(1, max|ref|) for both. And its loader's
//! refusals, each naming the fault.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use ddim_webgpu::classifier::{input_gradient, Classifier};
use ddim_webgpu::fast::FastOps;
use ddim_webgpu::gpu::classifier::GpuClassifier;
use ddim_webgpu::reference::ReferenceOps;
use ddim_webgpu::run::options::Edit;
use ddim_webgpu::run::{run_to_end, ClassLabels, Engine, Flow, GivenNoise, RunOptions, StepInfo, View};
use ddim_webgpu::sampler::SamplerKind;
use ddim_webgpu::Tensor;

const TOL: f32 = 1e-4;

fn load(dir: &std::path::Path) -> Classifier {
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    Classifier::from_files(&config, &bytes, "model.safetensors").unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// (name, classifier, x, t, target, logits, grad) of every fixture case.
fn cases() -> Vec<(String, Classifier, [Tensor; 5])> {
    let f = common::load(&common::fixtures().join("classifier.safetensors"));
    let root = common::fixtures().join("../../weights/digit-classifier");
    let mut out = Vec::new();
    for (name, dir) in [("small", common::fixtures().join("models/classifier_small")), ("bundled", root)] {
        if !f.contains_key(&format!("{name}.x")) {
            continue;
        }
        let get = |k: &str| f[&format!("{name}.{k}")].clone();
        out.push((name.to_string(), load(&dir), [get("x"), get("t"), get("target"), get("logits"), get("grad")]));
    }
    out
}

fn host<O: ddim_webgpu::classifier::ClassifierOps<T = Arc<Tensor>>>(ops: &mut O, clf: &Classifier, io: &[Tensor; 5]) -> (Tensor, Tensor) {
    let [x, t, target, ..] = io.clone().map(Arc::new);
    let g = input_gradient(ops, &clf.config, &x, &t, &target).unwrap();
    ((*g.logits).clone(), (*g.grad).clone())
}

fn check(what: &str, (logits, grad): (Tensor, Tensor), io: &[Tensor; 5]) {
    common::assert_close(&format!("{what}: logits"), &logits, &io[3], TOL);
    common::assert_close(&format!("{what}: scale·∇ₓ log p"), &grad, &io[4], TOL);
}

#[test]
fn reference_and_fast_engines_match_torch_autograd() {
    let cases = cases();
    assert!(!cases.is_empty());
    for (name, clf, io) in &cases {
        check(&format!("{name} (reference)"), host(&mut ReferenceOps::from_tensors(&clf.tensors), clf, io), io);
        for kernel in common::tested_kernels() {
            let mut fast = FastOps::from_tensors(&clf.tensors).with_kernel(kernel);
            check(&format!("{name} (fast, {kernel:?})"), host(&mut fast, clf, io), io);
            check(&format!("{name} (fast, {kernel:?}, no Winograd)"), host(&mut fast.clone().with_winograd(false), clf, io), io);
        }
        println!("{name}: grad |max| {:.4}, logits |max| {:.4}", io[4].max_abs(), io[3].max_abs());
    }
}

#[test]
fn gpu_engine_matches_torch_autograd() {
    let gpu = common::gpu();
    for (name, clf, io) in &cases() {
        let mut g = GpuClassifier::new(&gpu, clf).unwrap();
        let got = pollster::block_on(g.gradient(&gpu, &io[0], &io[1].data, &io[2].data)).unwrap();
        check(&format!("{name} (gpu)"), got, io);
        // Replayed with new inputs, the recording gives the new answer (nothing is baked in).
        let twice = pollster::block_on(g.gradient(&gpu, &io[0], &io[1].data, &io[2].data)).unwrap();
        check(&format!("{name} (gpu, replayed)"), twice, io);
    }
}

fn small_files() -> (serde_json::Value, HashMap<String, Tensor>) {
    let dir = common::fixtures().join("models/classifier_small");
    let config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    (config, common::load(&dir.join("model.safetensors")))
}

fn safetensors_bytes(tensors: &HashMap<String, Tensor>) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), bytemuck::cast_slice(&t.data)).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// (what, config, tensors, what the error must say).
type BadCase<'a> = (&'a str, serde_json::Value, HashMap<String, Tensor>, Vec<&'a str>);

#[test]
fn bad_classifiers_are_refused_by_name() {
    let (config, tensors) = small_files();
    let refused = |config: &serde_json::Value, tensors: &HashMap<String, Tensor>| {
        Classifier::from_files(&config.to_string(), &safetensors_bytes(tensors), "c.safetensors").unwrap_err().to_string()
    };
    let with = |key: &str, v: serde_json::Value| {
        let mut c = config.clone();
        c[key] = v;
        c
    };
    let cases: Vec<BadCase> = vec![
        ("unknown key", with("dropout", 0.1.into()), tensors.clone(), vec!["unknown field `dropout`"]),
        ("another class", with("_class_name", "UNet2DModel".into()), tensors.clone(), vec!["_class_name", "UNet2DModel"]),
        ("groups", with("norm_num_groups", 5.into()), tensors.clone(), vec!["block_out_channels", "norm_num_groups = 5"]),
        ("schedule", with("beta_schedule", "cosine".into()), tensors.clone(), vec!["cosine"]),
        (
            "missing key",
            {
                let mut c = config.clone();
                c.as_object_mut().unwrap().remove("num_classes");
                c
            },
            tensors.clone(),
            vec!["num_classes"],
        ),
        ("not an object", serde_json::json!([1, 2]), tensors.clone(), vec!["not a JSON object"]),
    ];
    let mut all = cases;
    let mut missing = tensors.clone();
    missing.remove("blocks.1.0.norm.bias");
    all.push(("missing tensor", config.clone(), missing, vec!["missing tensor `blocks.1.0.norm.bias`"]));
    let mut shaped = tensors.clone();
    shaped.insert("out.weight".into(), Tensor::zeros(vec![5, 12]));
    all.push(("wrong shape", config.clone(), shaped, vec!["out.weight", "[5, 12]", "[5, 16]"]));
    let mut extra = tensors.clone();
    extra.insert("head.weight".into(), Tensor::zeros(vec![2]));
    all.push(("extra tensor", config.clone(), extra, vec!["head.weight", "does not use"]));
    let mut poisoned = tensors.clone();
    poisoned.get_mut("blocks.2.1.conv.weight").unwrap().data[3] = f32::NAN;
    all.push(("NaN weight", config.clone(), poisoned, vec!["blocks.2.1.conv.weight", "NaN or Inf"]));
    for (what, config, tensors, says) in all {
        let e = refused(&config, &tensors);
        for s in says {
            assert!(e.contains(s), "{what}: {e:?} should say {s:?}");
        }
    }
    let truncated = &safetensors_bytes(&tensors)[..1000];
    let e = Classifier::from_files(&config.to_string(), truncated, "c.safetensors").unwrap_err().to_string();
    assert!(e.contains("c.safetensors"), "{e}");
}

fn bundled() -> (ddim_webgpu::Model, Classifier) {
    let root = common::fixtures().join("../../weights");
    (ddim_webgpu::Model::load_dir(&root.join("mnist-cond")).unwrap(), load(&root.join("digit-classifier")))
}

/// (name, U-Net labels, classifier labels, s, w) of a guided run in the fixture.
type GuidedRun = (&'static str, [i64; 2], [i64; 2], f32, f32);

const GUIDED: [GuidedRun; 2] = [("uncond_s5", [10, 10], [3, 8], 5.0, 0.0), ("cfg1_s2", [2, 7], [2, 7], 2.0, 1.0)];

fn guided_options(clf: &Classifier, (unet, y, s, w): ([i64; 2], [i64; 2], f32, f32), x_t: Tensor) -> RunOptions {
    RunOptions::new()
        .sampler(SamplerKind::Ddim)
        .steps(10)
        .noise(GivenNoise { x_t, per_step: None, undo: None })
        .labels(ClassLabels::Each(unet.to_vec()))
        .guidance(w)
        .classifier_guidance(&clf.config, s, Some(ClassLabels::Each(y.to_vec())))
}

/// Classifier-guided DDIM (alone on the unconditional model, and with classifier-free guidance)
/// against the same loop in torch (diffusers' DDIMScheduler, the term from torch.autograd), on
/// every engine: 10 steps, 1e-4 × max(1, max|ref|) on x_0 (measured error printed).
#[test]
fn guided_ddim_matches_the_torch_loop_on_every_engine() {
    let f = common::load(&common::fixtures().join("classifier.safetensors"));
    let (model, clf) = bundled();
    for (name, unet, y, s, w) in GUIDED {
        let want = &f[&format!("run_{name}.out")];
        let plan = guided_options(&clf, (unet, y, s, w), f[&format!("run_{name}.x_T")].clone()).plan(&model).unwrap();
        for (engine_name, mut engine) in common::every_engine(&model) {
            engine.set_classifier(&clf).unwrap();
            let got = pollster::block_on(run_to_end(&mut engine, &plan)).unwrap();
            println!("{name} on {engine_name}: max |diff| {:.2e}", got.max_abs_diff(want));
            common::assert_close(&format!("guided DDIM {name} ({engine_name})"), &got, want, TOL);
        }
    }
}

/// The term drawn by the "classifier" view is the one the step subtracted: the GPU's buffer
/// equals the CPU engine's, and guidance moves the sample (s = 0 and s = 5 differ).
#[test]
fn classifier_view_is_the_term_on_every_engine() {
    let f = common::load(&common::fixtures().join("classifier.safetensors"));
    let (model, clf) = bundled();
    let x_t = f["run_uncond_s5.x_T"].clone();
    let plan = guided_options(&clf, ([10, 10], [3, 8], 5.0, 0.0), x_t.clone()).steps(3).plan(&model).unwrap();
    let mut terms = Vec::new();
    for (engine_name, mut engine) in common::every_engine(&model) {
        engine.set_classifier(&clf).unwrap();
        pollster::block_on(async {
            ddim_webgpu::run::run(&mut engine, &plan, async |e: &mut ddim_webgpu::engines::AnyEngine, info: StepInfo| {
                if info.index == 1 {
                    terms.push((engine_name, e.read(View::Classifier).await?));
                }
                Ok(Flow::Continue)
            })
            .await
        })
        .unwrap();
    }
    let (_, cpu) = &terms[0];
    assert!(cpu.max_abs() > 1e-3, "the term is not all zeros: {}", cpu.max_abs());
    for (name, t) in &terms[1..] {
        common::assert_close(&format!("classifier view ({name} vs fast cpu)"), t, cpu, TOL);
    }
    let unguided = guided_options(&clf, ([10, 10], [3, 8], 0.0, 0.0), x_t).steps(3).plan(&model).unwrap();
    assert!(unguided.guidance.classifier.is_none());
    assert!(View::Classifier.check(&unguided).unwrap_err().to_string().contains("classifier guidance"));
    let mut cpu = ddim_webgpu::run::CpuEngine::new(&model);
    let a = pollster::block_on(run_to_end(&mut cpu, &unguided)).unwrap();
    cpu.set_classifier(&clf);
    let b = pollster::block_on(run_to_end(&mut cpu, &plan)).unwrap();
    assert!(a.max_abs_diff(&b) > 0.05, "guidance moved the sample by {}", a.max_abs_diff(&b));
}

/// Classifier guidance on the host-stepped and SDE samplers: the same term, every engine agrees.
#[test]
fn guided_host_stepped_samplers_agree_across_engines() {
    let (model, clf) = bundled();
    for sampler in ["euler-ancestral", "vp-sde", "pndm", "ddpm"] {
        let opts = RunOptions::new().sampler(sampler.parse().unwrap()).steps(6).batch(2).labels(ClassLabels::All(10)).seed(3);
        let plan = opts.classifier_guidance(&clf.config, 3.0, Some(ClassLabels::Each(vec![1, 6]))).plan(&model).unwrap();
        let mut outs = Vec::new();
        for (engine_name, mut engine) in common::every_engine(&model) {
            engine.set_classifier(&clf).unwrap();
            outs.push((engine_name, pollster::block_on(run_to_end(&mut engine, &plan)).unwrap()));
        }
        for (name, out) in &outs[1..] {
            common::assert_close(&format!("{sampler} guided ({name} vs fast cpu)"), out, &outs[0].1, TOL);
        }
    }
}

#[test]
fn classifier_guidance_is_refused_where_it_cannot_run() {
    let (model, clf) = bundled();
    let base = || RunOptions::new().steps(4).batch(2).labels(ClassLabels::All(10));
    let refused = |opts: RunOptions, says: &[&str]| {
        let e = opts.plan(&model).unwrap_err().to_string();
        for s in says {
            assert!(e.contains(s), "{e:?} should say {s:?}");
        }
    };
    refused(base().classifier_guidance(&clf.config, -1.0, None), &["classifier guidance scale = -1"]);
    refused(base().classifier_guidance(&clf.config, f32::NAN, None), &["classifier guidance scale = NaN"]);
    refused(base().classifier_guidance(&clf.config, 2.0, Some(ClassLabels::All(10))), &["class 10", "10 classes"]);
    refused(base().classifier_guidance(&clf.config, 2.0, Some(ClassLabels::Each(vec![1]))), &["1 classifier labels", "batch of 2"]);
    let v_pred = ddim_webgpu::sampler::SchedulerConfig::from_json(r#"{"prediction_type": "v_prediction"}"#).unwrap();
    refused(base().scheduler(v_pred).classifier_guidance(&clf.config, 2.0, None), &["v_prediction"]);
    let cosine = ddim_webgpu::sampler::SchedulerConfig::from_json(r#"{"beta_schedule": "squaredcos_cap_v2"}"#).unwrap();
    refused(base().scheduler(cosine).classifier_guidance(&clf.config, 2.0, None), &["linear betas", "another forward process"]);
    let mut small = clf.config.clone();
    small.sample_size = 32;
    refused(base().classifier_guidance(&small, 2.0, None), &["32×32", "28×28"]);
    let image = Tensor::zeros(vec![1, 1, 28, 28]);
    refused(base().edit(Edit::Invert { image }).batch(1).classifier_guidance(&clf.config, 2.0, None), &["inversion"]);
    // A plan that asks for the term on an engine without a classifier fails by name, before a step.
    let plan = base().classifier_guidance(&clf.config, 2.0, None).plan(&model).unwrap();
    for (name, mut engine) in common::every_engine(&model) {
        let e = pollster::block_on(run_to_end(&mut engine, &plan)).unwrap_err().to_string();
        assert!(e.contains("no classifier was loaded"), "{name}: {e}");
    }
}

/// `ddim sample --classifier-scale`: the bundled classifier by default, the U-Net's null class made
/// a digit, every evaluation counted; a broken classifier folder and a scale with an
/// unconditional-only sampler are errors naming the cause.
#[test]
fn cli_classifier_guidance() {
    let dir = std::env::temp_dir().join(format!("ddim-cli-classifier-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ddim = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ddim")).args(args).args(["--cpu"]).current_dir(&dir).output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let base = ["sample", "--steps", "6", "--num", "2", "--class", "10", "--seed", "2"];
    let (ok, text) = ddim(
        &[&base[..], &["--classifier-scale", "4", "--classifier-class", "7", "--out", "g.png", "--out-tensor", "g.safetensors"]].concat(),
    );
    assert!(ok, "{text}");
    assert!(text.contains("6 U-Net evaluations") && text.contains("classifier: 350634 parameters, 10 classes"), "{text}");
    let (ok, text) = ddim(&[&base[..], &["--out", "u.png", "--out-tensor", "u.safetensors"]].concat());
    assert!(ok, "{text}");
    let [g, u] = ["g", "u"].map(|n| common::load(&dir.join(format!("{n}.safetensors")))["sample"].clone());
    assert!(g.max_abs_diff(&u) > 0.05, "the classifier moved the sample by {}", g.max_abs_diff(&u));
    std::fs::write(dir.join("config.json"), "{\"_class_name\": \"NoisyClassifier\"}").unwrap();
    let (ok, text) = ddim(&[&base[..], &["--classifier-scale", "4", "--classifier", ".", "--out", "x.png"]].concat());
    assert!(!ok && text.contains("classifier config") && text.contains("missing field"), "{text}");
    let (ok, text) = ddim(&[&base[..], &["--classifier-scale", "4", "--sampler", "edm-euler", "--out", "x.png"]].concat());
    assert!(!ok && text.contains("EDMEulerScheduler gives the model σ"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A classifier whose gradient overflows (finite weights, huge logits: softmax of ±Inf is NaN)
/// makes the guided sample NaN at the first step: the run ends with an error naming that step,
/// on every engine.
#[test]
fn a_non_finite_gradient_is_named_by_its_step() {
    let (model, clf) = bundled();
    let mut tensors: HashMap<String, Tensor> =
        clf.tensors.iter().filter(|(k, _)| !k.contains("input_grad")).map(|(k, v)| (k.clone(), v.clone())).collect();
    for v in &mut tensors.get_mut("out.weight").unwrap().data {
        *v *= 3e38;
    }
    let broken = Classifier::from_tensors(clf.config.clone(), tensors, "F32".into()).unwrap();
    let plan =
        RunOptions::new().steps(4).batch(2).labels(ClassLabels::All(10)).classifier_guidance(&clf.config, 2.0, None).plan(&model).unwrap();
    for (name, mut engine) in common::every_engine(&model) {
        engine.set_classifier(&broken).unwrap();
        let e = pollster::block_on(run_to_end(&mut engine, &plan)).unwrap_err().to_string();
        assert!(e.contains("NaN or Inf at step 1 of 4"), "{name}: {e}");
    }
}
