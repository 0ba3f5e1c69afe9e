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
