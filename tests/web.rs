//! The browser suite (wasm-bindgen-test in headless Chromium, WebGPU on SwiftShader): every op case
//! of `op_cases` (the same cases as the native suite: PyTorch fixtures and random odd shapes) as
//! WebGPU kernel vs the CPU reference compiled to wasm, the scheduler-step kernel through the run
//! layer on both engines, one fixture U-Net against diffusers, and the pinned noise bits.
#![cfg(target_arch = "wasm32")]

#[path = "corpus/mod.rs"]
mod corpus;
#[path = "editing_cases/mod.rs"]
mod editing_cases;
#[path = "op_cases/mod.rs"]
mod op_cases;

use std::sync::Arc;

use ddim_webgpu::gpu::recorder::run_now;
use ddim_webgpu::gpu::unet::GpuUNet;
use ddim_webgpu::gpu::GpuDevice;
use ddim_webgpu::reference::ReferenceOps;
use ddim_webgpu::{Model, Tensor};
use op_cases::{apply, check_close, fixture_cases, gpu_inputs, random_cases, PYTORCH_TOL};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn gpu() -> GpuDevice {
    GpuDevice::new().await.expect("a WebGPU adapter (Chromium: --enable-unsafe-webgpu; Firefox: the prefs in tests/webdriver-firefox.json)")
}

#[wasm_bindgen_test]
async fn kernels_match_cpu_reference_in_the_browser() {
    let gpu = gpu().await;
    let fixtures = fixture_cases(include_str!("fixtures/ops.json"), include_bytes!("fixtures/ops.safetensors"));
    let mut failures = Vec::new();
    let mut checked = 0;
    for c in fixtures.iter().chain(&random_cases()) {
        let ins = gpu_inputs(c);
        let refs: Vec<&Tensor> = ins.iter().collect();
        let got = run_now(&gpu, &c.weights, &refs, |b, x| apply(b, &c.op, x)).await.unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let cpu_ins: Vec<_> = c.inputs.iter().map(|t| Arc::new(t.clone())).collect();
        let want = apply(&mut ReferenceOps::from_tensors(&c.weights), &c.op, &cpu_ins).unwrap();
        failures.extend(check_close(&format!("{} (browser gpu vs cpu)", c.name), &got, &want, c.tol, f32::MIN_POSITIVE).err());
        if let Some(expected) = &c.expected {
            failures.extend(check_close(&format!("{} (wasm cpu vs pytorch)", c.name), &want, expected, PYTORCH_TOL, 1.0).err());
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, 89, "22 fixture cases and 67 random cases");
}

#[wasm_bindgen_test]
async fn scheduler_step_kernel_matches_cpu_in_the_browser() {
    let model = Model::from_bytes(
        include_str!("fixtures/models/class_f16/config.json"),
        include_bytes!("fixtures/models/class_f16/diffusion_pytorch_model.safetensors"),
        None,
    )
    .unwrap();
    op_cases::scheduler_step_gpu_vs_cpu(gpu().await, &model).await.unwrap();
}

/// (name, config.json, weights, io.safetensors) of a fixture model, compiled in.
macro_rules! fixture_model {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("fixtures/models/", $name, "/config.json")),
            &include_bytes!(concat!("fixtures/models/", $name, "/diffusion_pytorch_model.safetensors"))[..],
            &include_bytes!(concat!("fixtures/models/", $name, "/io.safetensors"))[..],
        )
    };
}

/// Every fixture model of tests/unet.rs but the two largest (whose options the others cover) on
/// WebGPU and both CPU engines in wasm, against diffusers.
#[wasm_bindgen_test]
async fn fixture_unets_match_diffusers_in_the_browser() {
    let models = [
        fixture_model!("class_f16"),
        fixture_model!("no_mid_attn"),
        fixture_model!("ncsnpp_like"),
        fixture_model!("cm_like"),
        fixture_model!("learned_mish"),
        fixture_model!("gelu_timestep_class"),
        fixture_model!("relu_up_resnet"),
    ];
    let mut failures = Vec::new();
    for (name, config, weights, io) in models {
        let model = Model::from_bytes(config, weights, None).unwrap();
        let st = safetensors::SafeTensors::deserialize(io).unwrap();
        let get = |n: &str| -> Option<Vec<f32>> {
            let v = st.tensor(n).ok()?;
            Some(match v.dtype() {
                safetensors::Dtype::F32 => v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
                _ => v.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            })
        };
        let shape = |n: &str| st.tensor(n).unwrap().shape().to_vec();
        let sample = Tensor { shape: shape("sample"), data: get("sample").unwrap() };
        let want = Tensor { shape: shape("out"), data: get("out").unwrap() };
        let labels: Option<Vec<u32>> = get("class_labels").map(|l| l.iter().map(|&v| v as u32).collect());
        let t = get("timestep").unwrap();
        let got = GpuUNet::new(gpu().await, &model).unwrap().forward(&sample, &t, labels.as_deref()).await.unwrap();
        failures.extend(check_close(&format!("{name} (browser gpu vs diffusers)"), &got, &want, 1e-4, 1.0).err());
        let cpu = ddim_webgpu::reference::forward(&model, &sample, &t, labels.as_deref()).unwrap();
        failures.extend(check_close(&format!("{name} (wasm reference vs diffusers)"), &cpu, &want, 1e-4, 1.0).err());
        let mut ops = ddim_webgpu::fast::FastOps::new(&model);
        let fast = ddim_webgpu::reference::forward_with(&mut ops, &model.config, &sample, &t, labels.as_deref()).unwrap();
        failures.extend(check_close(&format!("{name} (wasm fast cpu vs diffusers)"), &fast, &want, 1e-4, 1.0).err());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[wasm_bindgen_test]
fn noise_bits_match_native() {
    // Same pinned values as tests/rng.rs natively.
    let bits: Vec<u32> = ddim_webgpu::sampler::rng::normal(42, 0, 6).iter().map(|x| x.to_bits()).collect();
    assert_eq!(bits, [1063448960, 1054929735, 3189792326, 3160458319, 3204250302, 3200158888]);
}

/// The sampler draws into an OffscreenCanvas too (what an engine in a Web Worker gets from
/// `transferControlToOffscreen`): on both engines, the canvas ends on the sampler's last image
/// (WebGPU: presented directly where the browser can, else read back into its 2D context).
#[wasm_bindgen_test]
async fn sampler_draws_into_an_offscreen_canvas() {
    use ddim_webgpu::web::DiffusionSampler;
    use wasm_bindgen::{JsCast, JsValue};
    for engine in ["cpu:1", "webgpu"] {
        let canvas = web_sys::OffscreenCanvas::new(8, 8).unwrap();
        let sampler = DiffusionSampler::create(
            canvas.clone().into(),
            include_str!("fixtures/models/class_f16/config.json").into(),
            include_bytes!("fixtures/models/class_f16/diffusion_pytorch_model.safetensors").to_vec(),
            None,
            engine.into(),
            Some(false), // a standalone OffscreenCanvas is never presented: read frames back
        )
        .await
        .unwrap_or_else(|e| panic!("{engine}: {e:?}"));
        let opts = js_sys::JSON::parse(r#"{"steps": 3, "batch": 2, "seed": 4}"#).unwrap();
        wasm_bindgen_futures::JsFuture::from(sampler.run(opts, None)).await.unwrap_or_else(|e| panic!("{engine}: {e:?}"));
        let last = sampler.last_image();
        let get = |k: &str| js_sys::Reflect::get(&last, &k.into()).unwrap();
        let (w, h) = (get("width").as_f64().unwrap(), get("height").as_f64().unwrap());
        assert_eq!((canvas.width() as f64, canvas.height() as f64), (w, h), "{engine}: the canvas is sized to the grid");
        let want = js_sys::Uint8ClampedArray::from(get("data")).to_vec();
        let ctx: web_sys::OffscreenCanvasRenderingContext2d = canvas.get_context("2d").unwrap().unwrap().dyn_into().unwrap();
        let shown = ctx.get_image_data(0.0, 0.0, w, h).unwrap().data().to_vec();
        assert_eq!(shown, want, "{engine}: the canvas shows the last sample");
        assert!(want.iter().step_by(4).any(|&v| v != want[0]), "{engine}: the image is not uniform");
        sampler.destroy();
        let destroyed = js_sys::Reflect::get(&sampler.stats(), &"gpuBuffers".into()).unwrap();
        assert_eq!(destroyed, JsValue::from(0.0), "{engine}: destroy frees every GPU buffer");
    }
}

/// One corpus case through the browser API (`DiffusionSampler.create` + `run`), or, for cases that
/// cap the GPU's buffer limit, through the engine's Rust API compiled to wasm. Err: the message.
async fn corpus_case_in_wasm(case: &corpus::Case) -> Result<(), String> {
    use ddim_webgpu::web::DiffusionSampler;
    let inputs = corpus::inputs(case);
    let o = js_sys::Object::new();
    for (name, v) in case.run.numbers() {
        let key = if name == "class" { "classLabel" } else { name };
        js_sys::Reflect::set(&o, &key.into(), &v.into()).unwrap();
    }
    if let Some(s) = &case.run.sampler {
        js_sys::Reflect::set(&o, &"sampler".into(), &s.into()).unwrap();
    }
    if let Some(cap) = case.max_buffer_bytes {
        let model = Model::from_bytes(&inputs.config, &inputs.weights, inputs.scheduler.as_deref()).map_err(|e| e.to_string())?;
        let opts = ddim_webgpu::web::read_run_options(&o.into(), &model, None).map_err(|e| e.to_string())?.opts;
        let plan = opts.plan(&model).map_err(|e| e.to_string())?;
        let mut device = gpu().await;
        device.cap_buffer_bytes(cap);
        let mut engine = ddim_webgpu::gpu::engine::GpuEngine::new(device, &model).map_err(|e| e.to_string())?;
        return ddim_webgpu::run::run_to_end(&mut engine, &plan).await.map(|_| ()).map_err(|e| e.to_string());
    }
    let engine = if case.run.gpu() { "webgpu" } else { "cpu:1" };
    let message = |e: wasm_bindgen::JsValue| js_sys::Error::from(e).message().as_string().unwrap_or_default();
    let canvas = web_sys::OffscreenCanvas::new(8, 8).unwrap();
    let sampler = DiffusionSampler::create(canvas.into(), inputs.config, inputs.weights, inputs.scheduler, engine.into(), Some(false))
        .await
        .map_err(message)?;
    let result = wasm_bindgen_futures::JsFuture::from(sampler.run(o.into(), None)).await.map(|_| ()).map_err(message);
    sampler.destroy();
    result
}

/// The bad-input corpus through the browser API: a named error for each case, never a panic
/// (a panic aborts wasm: the next case would fail too) and never a hang (each case is timed).
#[wasm_bindgen_test]
async fn corpus_through_the_browser_api() {
    let cases = corpus::cases();
    let mut failures = Vec::new();
    for case in &cases {
        let start = ddim_webgpu::reference::profile::now_ms();
        match corpus_case_in_wasm(case).await {
            Ok(()) => failures.push(format!("case {:?}: no error", case.name)),
            Err(message) => failures.extend(corpus::mismatch(case, "browser API", &message)),
        }
        let ms = ddim_webgpu::reference::profile::now_ms() - start;
        assert!(ms < 60_000.0, "case {:?} took {ms} ms", case.name);
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// The fast solvers (Euler, Heun, DPM-Solver++) against diffusers in the browser: every case of
/// tests/fixtures/solvers.* on the wasm CPU engine, one case per solver on WebGPU (SwiftShader is
/// slow), 1e-4 × max(1, max|ref|) as natively.
#[wasm_bindgen_test]
async fn solver_runs_match_diffusers_in_the_browser() {
    use ddim_webgpu::run::{run_to_end, ClassLabels, CpuEngine, GivenNoise, RunOptions};
    use ddim_webgpu::sampler::{SamplerKind, SchedulerConfig};
    let st = safetensors::SafeTensors::deserialize(include_bytes!("fixtures/solvers.safetensors")).unwrap();
    let get = |n: &str| {
        let v = st.tensor(n).unwrap();
        Tensor { shape: v.shape().to_vec(), data: v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect() }
    };
    let cases: serde_json::Value = serde_json::from_str(include_str!("fixtures/solvers.json")).unwrap();
    let mut on_gpu = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for c in cases.as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let kind: SamplerKind = c["sampler"].as_str().unwrap().parse().unwrap();
        let (config, weights) = corpus::base(c["model"].as_str().unwrap());
        let model = Model::from_bytes(config, weights, None).unwrap();
        let mut opts = RunOptions::new()
            .sampler(kind)
            .scheduler(SchedulerConfig::from_value(c["config"].clone()).unwrap())
            .steps(c["num_inference_steps"].as_u64().unwrap() as usize)
            .guidance(c["guidance"].as_f64().unwrap_or(0.0) as f32)
            .noise(GivenNoise { x_t: get(&format!("{name}.x_T")), per_step: None, undo: None });
        if let Some(labels) = c["class_labels"].as_array() {
            opts = opts.labels(ClassLabels::Each(labels.iter().map(|v| v.as_i64().unwrap()).collect()));
        }
        let plan = opts.plan(&model).unwrap();
        let want = get(&format!("{name}.x_0"));
        let got = run_to_end(&mut CpuEngine::new(&model), &plan).await.unwrap();
        failures.extend(check_close(&format!("{name} (wasm cpu)"), &got, &want, 1e-4, 1.0).err());
        if on_gpu.insert(kind.as_str()) {
            let mut engine = ddim_webgpu::gpu::engine::GpuEngine::new(gpu().await, &model).unwrap();
            let got = run_to_end(&mut engine, &plan).await.unwrap();
            failures.extend(check_close(&format!("{name} (webgpu)"), &got, &want, 1e-4, 1.0).err());
            engine.gpu().destroy();
        }
    }
    assert_eq!(on_gpu.len(), 3, "one case of each solver ran on WebGPU");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The host-stepped samplers against diffusers' pipelines in the browser (tests/fixtures/host_runs.*,
/// as tests/host_samplers.rs natively): every case on the wasm CPU engine and on WebGPU, given
/// diffusers' noise, 1e-4 × max(1, max|ref|).
#[wasm_bindgen_test]
async fn host_stepped_runs_match_diffusers_in_the_browser() {
    use ddim_webgpu::run::{run_to_end, ClassLabels, CpuEngine, GivenNoise, RunOptions};
    use ddim_webgpu::sampler::{SamplerKind, SchedulerConfig};
    let st = safetensors::SafeTensors::deserialize(include_bytes!("fixtures/host_runs.safetensors")).unwrap();
    let get = |n: &str| {
        let v = st.tensor(n).unwrap();
        Tensor { shape: v.shape().to_vec(), data: v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect() }
    };
    let cases: serde_json::Value = serde_json::from_str(include_str!("fixtures/host_runs.json")).unwrap();
    let mut failures = Vec::new();
    for c in cases.as_array().unwrap() {
        let (name, class) = (c["name"].as_str().unwrap(), c["class"].as_str().unwrap());
        let (config, weights) = corpus::base(c["model"].as_str().unwrap());
        let model = Model::from_bytes(config, weights, None).unwrap();
        let mut scheduler = c["config"].clone();
        scheduler["_class_name"] = class.into();
        let noise = GivenNoise { x_t: get(&format!("{name}.x_T")), per_step: Some(get(&format!("{name}.step_noise"))), undo: None };
        let mut opts = RunOptions::new()
            .sampler(SamplerKind::of_class(class).unwrap())
            .scheduler(SchedulerConfig::load(&scheduler.to_string()).unwrap())
            .steps(c["num_inference_steps"].as_u64().unwrap() as usize)
            .guidance(c["guidance"].as_f64().unwrap_or(0.0) as f32)
            .noise(noise);
        if let Some(labels) = c["class_labels"].as_array() {
            opts = opts.labels(ClassLabels::Each(labels.iter().map(|v| v.as_i64().unwrap()).collect()));
        }
        let plan = opts.plan(&model).unwrap();
        let want = get(&format!("{name}.x_0"));
        let got = run_to_end(&mut CpuEngine::new(&model), &plan).await.unwrap();
        failures.extend(check_close(&format!("{name} (wasm cpu)"), &got, &want, 1e-4, 1.0).err());
        let mut engine = ddim_webgpu::gpu::engine::GpuEngine::new(gpu().await, &model).unwrap();
        let got = run_to_end(&mut engine, &plan).await.unwrap();
        failures.extend(check_close(&format!("{name} (webgpu)"), &got, &want, 1e-4, 1.0).err());
        engine.gpu().destroy();
    }
    assert_eq!(cases.as_array().unwrap().len(), 13, "every case of host_runs.json");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The editing runs against diffusers in the browser (tests/fixtures/editing.*): SDEdit, DDIM
/// inversion and the reconstruction from it, RePaint — every case on the wasm CPU engine, one
/// case of each kind on WebGPU, 1e-4 × max(1, max|ref|) as natively.
#[wasm_bindgen_test]
async fn editing_runs_match_diffusers_in_the_browser() {
    use ddim_webgpu::run::{run_to_end, CpuEngine, Engine};
    let st = safetensors::SafeTensors::deserialize(include_bytes!("fixtures/editing.safetensors")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(include_str!("fixtures/editing.json")).unwrap();
    let mut on_gpu = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for c in cases.as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let get = |k: &str| {
            let v = st.tensor(&format!("{name}.{k}")).unwrap();
            Tensor {
                shape: v.shape().to_vec(),
                data: v.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            }
        };
        let (config, weights) = corpus::base(c["model"].as_str().unwrap());
        let model = Model::from_bytes(config, weights, None).unwrap();
        let opts = editing_cases::options(c, &get);
        let plan = opts.plan(&model).unwrap();
        let kind = c["kind"].as_str().unwrap();
        let want = get(if kind == "invert" { "x_T" } else { "x_0" });
        // The run, then for an inversion the DDIM reconstruction from the x_T it found.
        async fn check<E: Engine>(
            e: &mut E,
            runs: (&ddim_webgpu::run::RunPlan, &ddim_webgpu::run::RunOptions, &Model),
        ) -> (Tensor, Option<Tensor>) {
            let (plan, opts, model) = runs;
            let got = run_to_end(e, plan).await.unwrap();
            if !plan.inverts {
                return (got, None);
            }
            let recon = run_to_end(e, &opts.reconstruction(got.clone()).plan(model).unwrap()).await.unwrap();
            (got, Some(recon))
        }
        let mut compare = |label: &str, (got, recon): (Tensor, Option<Tensor>)| {
            failures.extend(check_close(&format!("{name} ({label})"), &got, &want, 1e-4, 1.0).err());
            if let Some(r) = recon {
                failures.extend(check_close(&format!("{name} reconstruction ({label})"), &r, &get("recon"), 1e-4, 1.0).err());
            }
        };
        compare("wasm cpu", check(&mut CpuEngine::new(&model), (&plan, &opts, &model)).await);
        if on_gpu.insert(kind.to_string()) {
            let mut engine = ddim_webgpu::gpu::engine::GpuEngine::new(gpu().await, &model).unwrap();
            compare("webgpu", check(&mut engine, (&plan, &opts, &model)).await);
            engine.gpu().destroy();
        }
    }
    assert_eq!(on_gpu.len(), 3, "one case of each kind ran on WebGPU");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Classifier guidance in the browser: the classifier's logits and scaled input gradient (the
/// small odd-shaped fixture classifier and the bundled one) on WebGPU and the wasm CPU engine
/// against torch.autograd, and a classifier-guided DDIM run of the bundled model (unconditional,
/// s = 5) on both engines against the torch loop; 1e-4 × max(1, max|ref|) as natively.
#[wasm_bindgen_test]
async fn classifier_guidance_matches_torch_in_the_browser() {
    use ddim_webgpu::classifier::{input_gradient, Classifier};
    use ddim_webgpu::run::{run_to_end, ClassLabels, CpuEngine, GivenNoise, RunOptions};
    let st = safetensors::SafeTensors::deserialize(include_bytes!("fixtures/classifier.safetensors")).unwrap();
    let get = |n: &str| {
        let v = st.tensor(n).unwrap();
        Tensor { shape: v.shape().to_vec(), data: v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect() }
    };
    let classifiers = [
        (
            "small",
            include_str!("fixtures/models/classifier_small/config.json"),
            &include_bytes!("fixtures/models/classifier_small/model.safetensors")[..],
        ),
        (
            "bundled",
            include_str!("../weights/digit-classifier/config.json"),
            &include_bytes!("../weights/digit-classifier/model.safetensors")[..],
        ),
    ];
    let gpu = gpu().await;
    let mut failures = Vec::new();
    for (name, config, weights) in classifiers {
        let clf = Classifier::from_files(config, weights, name).unwrap();
        let [x, t, target, logits, grad] = ["x", "t", "target", "logits", "grad"].map(|k| get(&format!("{name}.{k}")));
        let mut g = ddim_webgpu::gpu::classifier::GpuClassifier::new(&gpu, &clf).unwrap();
        let (l, d) = g.gradient(&gpu, &x, &t.data, &target.data).await.unwrap();
        failures.extend(check_close(&format!("{name} logits (webgpu)"), &l, &logits, 1e-4, 1.0).err());
        failures.extend(check_close(&format!("{name} gradient (webgpu)"), &d, &grad, 1e-4, 1.0).err());
        let mut ops = ddim_webgpu::fast::FastOps::from_tensors(&clf.tensors);
        let out = input_gradient(&mut ops, &clf.config, &Arc::new(x), &Arc::new(t), &Arc::new(target)).unwrap();
        failures.extend(check_close(&format!("{name} logits (wasm cpu)"), &out.logits, &logits, 1e-4, 1.0).err());
        failures.extend(check_close(&format!("{name} gradient (wasm cpu)"), &out.grad, &grad, 1e-4, 1.0).err());
    }
    let model = Model::from_bytes(
        include_str!("../weights/mnist-cond/config.json"),
        include_bytes!("../weights/mnist-cond/diffusion_pytorch_model.safetensors"),
        Some(include_str!("../weights/mnist-cond/scheduler_config.json")),
    )
    .unwrap();
    let clf = Classifier::from_files(classifiers[1].1, classifiers[1].2, "bundled").unwrap();
    let plan = RunOptions::new()
        .steps(10)
        .sampler(ddim_webgpu::sampler::SamplerKind::Ddim)
        .noise(GivenNoise { x_t: get("run_uncond_s5.x_T"), per_step: None, undo: None })
        .labels(ClassLabels::All(10))
        .classifier_guidance(&clf.config, 5.0, Some(ClassLabels::Each(vec![3, 8])))
        .plan(&model)
        .unwrap();
    let want = get("run_uncond_s5.out");
    let mut cpu = CpuEngine::new(&model);
    cpu.set_classifier(&clf);
    failures.extend(check_close("guided DDIM (wasm cpu)", &run_to_end(&mut cpu, &plan).await.unwrap(), &want, 1e-4, 1.0).err());
    let mut engine = ddim_webgpu::gpu::engine::GpuEngine::new(gpu, &model).unwrap();
    engine.set_classifier(&clf).unwrap();
    failures.extend(check_close("guided DDIM (webgpu)", &run_to_end(&mut engine, &plan).await.unwrap(), &want, 1e-4, 1.0).err());
    engine.gpu().destroy();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Memory pressure in the browser (#33 item 6): a batch whose U-Net activations pass a wasm32
/// heap's 4 GiB is refused by the wasm CPU engine before anything is allocated, with the numbers.
#[wasm_bindgen_test]
async fn activations_over_the_wasm_heap_are_refused_before_allocating() {
    use ddim_webgpu::run::{run_to_end, CpuEngine, RunOptions};
    let model = Model::from_bytes(
        include_str!("../weights/mnist-cond/config.json"),
        include_bytes!("../weights/mnist-cond/diffusion_pytorch_model.safetensors"),
        Some(include_str!("../weights/mnist-cond/scheduler_config.json")),
    )
    .unwrap();
    let per_item = ddim_webgpu::model::memory::activation_bytes(&model.config, 1, 28, 28);
    let batch = (ddim_webgpu::model::memory::WASM32_HEAP_BYTES / per_item + 1) as usize;
    let plan = RunOptions::new().steps(1).batch(batch).plan(&model).unwrap();
    let e = run_to_end(&mut CpuEngine::new(&model), &plan).await.unwrap_err().to_string();
    assert!(e.contains("4 GiB") && e.contains(&format!("{batch} 28×28 item(s)")) && e.contains("smaller batch"), "{e}");
}
