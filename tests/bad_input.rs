#![cfg(not(target_arch = "wasm32"))]
//! Every kind of bad input is answered by a typed error whose message names the problem; nothing
//! panics or hangs.

mod common;
mod corpus;

use common::*;
use ddim_webgpu::run::{ClassLabels, CpuEngine, GivenNoise, RunOptions};
use ddim_webgpu::sampler::{SamplerKind, Schedule, SchedulerConfig};
use ddim_webgpu::{Error, Model, Tensor};
use safetensors::Dtype;

fn tiny() -> (String, Vec<u8>) {
    let dir = fixtures().join("models/tiny_attn");
    (std::fs::read_to_string(dir.join("config.json")).unwrap(), std::fs::read(dir.join("diffusion_pytorch_model.safetensors")).unwrap())
}

fn err(r: ddim_webgpu::Result<impl std::fmt::Debug>) -> Error {
    r.expect_err("expected an error")
}

fn with_config(edit: impl FnOnce(&mut serde_json::Value)) -> ddim_webgpu::Result<Model> {
    let (cfg, st) = tiny();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    edit(&mut v);
    Model::from_bytes(&v.to_string(), &st, None)
}

/// The tiny model's tensors re-serialised after `edit` (None drops a tensor).
fn with_tensors(edit: impl Fn(&str, &mut Dtype, &mut Vec<usize>, &mut Vec<u8>) -> bool) -> Vec<u8> {
    let (_, st) = tiny();
    let parsed = safetensors::SafeTensors::deserialize(&st).unwrap();
    let mut owned = Vec::new();
    for (name, v) in parsed.tensors() {
        let (mut dt, mut shape, mut data) = (v.dtype(), v.shape().to_vec(), v.data().to_vec());
        if edit(&name, &mut dt, &mut shape, &mut data) {
            owned.push((name, dt, shape, data));
        }
    }
    let views: Vec<_> =
        owned.iter().map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn truncated_garbled_and_lying_safetensors() {
    let (cfg, st) = tiny();
    for cut in [0, 5, 100, st.len() / 2, st.len() - 1] {
        let e = err(Model::from_bytes(&cfg, &st[..cut], None));
        assert!(matches!(e, Error::Safetensors { .. }), "cut at {cut}: {e}");
    }
    let e = err(Model::from_bytes(&cfg, b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!", None));
    assert!(e.to_string().contains("header"), "{e}");
    // A header whose offsets point past the data.
    let n = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(st[8..8 + n].to_vec()).unwrap();
    let lying = header.replacen("\"data_offsets\":[0,", "\"data_offsets\":[9999999,", 1);
    assert_ne!(lying, header, "fixture header format changed");
    let mut bad = (lying.len() as u64).to_le_bytes().to_vec();
    bad.extend(lying.as_bytes());
    bad.extend(&st[8 + n..]);
    let e = err(Model::from_bytes(&cfg, &bad, None));
    assert!(matches!(e, Error::Safetensors { .. }), "{e}");
}

#[test]
fn integer_dtype_missing_key_and_wrong_shape() {
    let (cfg, _) = tiny();
    let ints = with_tensors(|name, dt, shape, data| {
        if name == "conv_in.bias" {
            *dt = Dtype::I32;
            *shape = vec![data.len() / 4];
        }
        true
    });
    let e = err(Model::from_bytes(&cfg, &ints, None));
    assert!(matches!(&e, Error::Dtype { name, .. } if name == "conv_in.bias"), "{e}");

    let missing = with_tensors(|name, _, _, _| name != "mid_block.attentions.0.to_k.weight");
    let e = err(Model::from_bytes(&cfg, &missing, None));
    assert!(e.to_string().contains("mid_block.attentions.0.to_k.weight"), "{e}");

    let e = err(with_config(|v| v["block_out_channels"] = serde_json::json!([16, 24, 40])));
    assert!(matches!(e, Error::Shape { .. } | Error::MissingTensor(_)), "{e}");
    assert!(e.to_string().contains("down_blocks.2") || e.to_string().contains("up_blocks"), "{e}");

    // Fewer layers than the weights hold: either a shape the config does not expect or leftovers.
    let e = err(with_config(|v| v["layers_per_block"] = serde_json::json!(1)));
    assert!(matches!(e, Error::Shape { .. } | Error::Config(_)) && e.to_string().contains("blocks."), "{e}");
    // Extra tensors the config does not use are refused too.
    let extra = with_tensors(|_, _, _, _| true);
    let (cfg, _) = tiny();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["add_attention"] = serde_json::json!(false);
    let e = err(Model::from_bytes(&v.to_string(), &extra, None));
    assert!(e.to_string().contains("does not use") && e.to_string().contains("mid_block.attentions.0"), "{e}");
}

#[test]
fn unsupported_configs_name_the_field() {
    for (field, value) in [
        ("norm_num_groups", serde_json::json!(5)),
        ("act_fn", serde_json::json!("tanh")),
        ("time_embedding_type", serde_json::json!("adm")),
        ("time_embedding_type", serde_json::json!("learned")), // without num_train_timesteps
        ("resnet_time_scale_shift", serde_json::json!("spatial")),
        ("downsample_type", serde_json::json!("fir")),
        ("upsample_type", serde_json::json!("fir")),
        ("class_embed_type", serde_json::json!("identity")),
        ("dropout", serde_json::json!(1.5)),
        ("norm_num_groups", serde_json::Value::Null), // DownBlock2D needs it: only the Skip blocks do without
        ("down_block_types", serde_json::json!(["DownBlock2D", "CrossAttnDownBlock2D", "AttnDownBlock2D"])),
        ("sample_size", serde_json::json!(10)),
        ("class_embed_type", serde_json::json!("timestep")), // without num_class_embeds
        ("mid_block_type", serde_json::json!("UNetMidBlock2DCrossAttn")),
        ("attention_head_dim", serde_json::json!(64)),
    ] {
        let e = err(with_config(|v| v[field] = value.clone()));
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
    let e = err(Model::from_bytes("{not json", &[], None));
    assert!(matches!(e, Error::Config(_)), "{e}");
    // The Skip blocks' image path is 3 channels in diffusers: another count is refused by name.
    let e = err(with_config(|v| {
        v["in_channels"] = serde_json::json!(4);
        v["down_block_types"] = serde_json::json!(["SkipDownBlock2D", "AttnSkipDownBlock2D", "SkipDownBlock2D"]);
    }));
    assert!(e.to_string().contains("in_channels") && e.to_string().contains("Skip"), "{e}");
    // AttnSkipUpBlock2D's groups (32, as diffusers computes them) must divide its channels.
    let e = err(with_config(|v| v["up_block_types"] = serde_json::json!(["AttnSkipUpBlock2D", "AttnUpBlock2D", "UpBlock2D"])));
    assert!(e.to_string().contains("up_blocks.0") && e.to_string().contains("groups"), "{e}");
}

/// A Fourier (VE) model reads log σ and a learned table integer rows: timesteps that are not such
/// are refused by the forward and by a run's plan, naming the timestep.
#[test]
fn timesteps_a_time_embedding_cannot_read_are_refused() {
    let fourier = Model::load_dir(&fixtures().join("models/ncsnpp_like")).unwrap();
    let x = Tensor::zeros(vec![1, 3, 16, 16]);
    let e = err(ddim_webgpu::reference::forward(&fourier, &x, &[0.0], None));
    assert!(e.to_string().contains("timestep 0") && e.to_string().contains("Fourier"), "{e}");
    // DDIM ends at t = 0: log 0 is not a σ.
    let e = err(ddim_webgpu::run::RunOptions::new().steps(3).plan(&fourier));
    assert!(e.to_string().contains("Fourier") && e.to_string().contains("ddim"), "{e}");
    let learned = Model::load_dir(&fixtures().join("models/learned_mish")).unwrap();
    let x = Tensor::zeros(vec![1, 1, 8, 8]);
    for t in [2.5, 1000.0, -1.0] {
        let e = err(ddim_webgpu::reference::forward(&learned, &x, &[t], Some(&[1])));
        assert!(e.to_string().contains("learned"), "{t}: {e}");
    }
    // Euler's timesteps lie between integers: refused for a learned table.
    let e = err(ddim_webgpu::run::RunOptions::new().sampler(ddim_webgpu::sampler::SamplerKind::Euler).steps(7).plan(&learned));
    assert!(e.to_string().contains("learned") && e.to_string().contains("euler"), "{e}");
}

#[test]
fn bad_forward_inputs() {
    let (cfg, st) = tiny();
    let model = Model::from_bytes(&cfg, &st, None).unwrap();
    let bad = [
        (Tensor::zeros(vec![1, 3, 10, 10]), vec![1.0], None, "halve"),
        (Tensor::zeros(vec![1, 4, 12, 12]), vec![1.0], None, "channels"),
        (Tensor::zeros(vec![2, 3, 12, 12]), vec![1.0], None, "timesteps"),
        (Tensor::zeros(vec![1, 3, 12, 12]), vec![1.0], Some(vec![0u32]), "class"),
    ];
    for (x, t, labels, word) in bad {
        let e = err(ddim_webgpu::reference::forward(&model, &x, &t, labels.as_deref()));
        assert!(e.to_string().contains(word), "{word}: {e}");
    }
    let class = Model::load_dir(&fixtures().join("models/class_f16")).unwrap();
    let x = Tensor::zeros(vec![1, 1, 8, 8]);
    assert!(err(ddim_webgpu::reference::forward(&class, &x, &[1.0], Some(&[5]))).to_string().contains("out of range"));
    assert!(err(ddim_webgpu::reference::forward(&class, &x, &[1.0], None)).to_string().contains("class labels are required"));
}

#[test]
fn bad_sampler_settings() {
    let s = Schedule::new(SchedulerConfig::default());
    assert!(err(s.ddim_steps(0, 0.0)).to_string().contains("0 inference steps"));
    assert!(err(s.ddim_steps(1001, 0.0)).to_string().contains("more than num_train_timesteps"));
    assert!(err(s.ddim_steps(10, -0.5)).to_string().contains("eta"));
    // Unknown strings are load-time errors naming the field (not run-time surprises).
    for (json, field) in [
        (r#"{"beta_schedule": "sigmoid"}"#, "beta_schedule"),
        (r#"{"prediction_type": "flow"}"#, "prediction_type"),
        (r#"{"thresholding": true}"#, "thresholding"),
        (r#"{"timestep_spacing": "uniform"}"#, "timestep_spacing"),
        (r#"{"variance_type": "wide"}"#, "variance_type"),
        (r#"{"trained_betas": [0.1]}"#, "trained_betas"),
    ] {
        assert!(err(SchedulerConfig::from_json(json)).to_string().contains(field), "{json}");
        let (cfg, st) = tiny();
        assert!(err(Model::from_bytes(&cfg, &st, Some(json))).to_string().contains(field), "{json} at model load");
    }
    let class = Model::load_dir(&fixtures().join("models/class_f16")).unwrap();
    let plan = |o: RunOptions| o.plan(&class).map(|_| ());
    assert!(err(plan(RunOptions::new().batch(2).labels(ClassLabels::Each(vec![1])))).to_string().contains("class labels for a batch"));
    assert!(err(plan(RunOptions::new().guidance(-1.0))).to_string().contains("guidance"));
    assert!(err(plan(RunOptions::new().batch(0))).to_string().contains("batch = 0"));
    // Labels out of range are errors, never clamped.
    for bad in [-1i64, 5, 1 << 40] {
        let e = err(plan(RunOptions::new().labels(ClassLabels::All(bad))));
        assert!(e.to_string().contains(&format!("class label {bad} out of range")), "{e}");
    }
    let tiny_model = {
        let (c, s) = tiny();
        Model::from_bytes(&c, &s, None).unwrap()
    };
    assert!(err(RunOptions::new().labels(ClassLabels::All(0)).plan(&tiny_model)).to_string().contains("no class embedding"));
}

#[test]
fn given_noise_is_never_filled_in_silently() {
    let model = Model::load_dir(&fixtures().join("models/tiny_attn")).unwrap();
    let x_t = randn(&[3, 3, 12, 12], 1);
    let given = |per_step: Option<Tensor>| GivenNoise { x_t: x_t.clone(), per_step, undo: None };
    // The noise sets the batch and the size; a different --num is refused.
    let plan = RunOptions::new().steps(4).noise(given(None)).plan(&model).unwrap();
    assert_eq!(plan.shape, [3, 3, 12, 12]);
    assert!(err(RunOptions::new().steps(4).batch(2).noise(given(None)).plan(&model)).to_string().contains("holds 3 images"));
    assert!(err(RunOptions::new().seed(1).noise(given(None)).plan(&model)).to_string().contains("pick one"));
    // DDPM and DDIM with eta > 0 add noise at each step: without step noise they fail up front.
    for opts in [RunOptions::new().sampler(SamplerKind::Ddpm), RunOptions::new().eta(0.5)] {
        let e = err(opts.clone().steps(4).noise(given(None)).plan(&model));
        assert!(e.to_string().contains("step_noise"), "{e}");
        let e = err(opts.clone().steps(4).noise(given(Some(randn(&[2, 3, 3, 12, 12], 2)))).plan(&model));
        assert!(e.to_string().contains("step 2 adds noise"), "{e}");
        let plan = opts.steps(4).noise(given(Some(randn(&[4, 3, 3, 12, 12], 2)))).plan(&model).unwrap();
        pollster::block_on(ddim_webgpu::run::run_to_end(&mut CpuEngine::new(&model), &plan)).unwrap();
    }
    assert!(err(RunOptions::new().noise(given(Some(randn(&[4, 3, 12, 12], 2)))).plan(&model)).to_string().contains("[S, 3, 3, 12, 12]"));
}

/// A scheduler config naming a class the engine does not implement is refused by name when the
/// run would take its sampler from it, and runs when a sampler is chosen explicitly; the fused
/// host `Scheduler` (DDIM/DDPM only) refuses other classes too. (Such configs ran silently as DDIM
/// before; PNDM, once refused, now runs stepped on the host.)
#[test]
fn unknown_scheduler_classes_are_refused_not_run_as_ddim() {
    let (cfg, st) = tiny();
    let sde = r#"{"_class_name": "DPMSolverSDEScheduler", "beta_schedule": "linear"}"#;
    let model = Model::from_bytes(&cfg, &st, Some(sde)).unwrap();
    let e = err(RunOptions::new().steps(2).plan(&model)).to_string();
    assert!(e.contains("unknown scheduler class") && e.contains("\"DPMSolverSDEScheduler\""), "{e}");
    RunOptions::new().steps(2).sampler(SamplerKind::Euler).plan(&model).expect("an explicit sampler runs it");
    let pndm = r#"{"_class_name": "PNDMScheduler", "beta_schedule": "linear"}"#;
    let model = Model::from_bytes(&cfg, &st, Some(pndm)).unwrap();
    let plan = RunOptions::new().steps(4).plan(&model).expect("PNDM runs, stepped on the host");
    assert_eq!(plan.host.as_ref().map(|h| h.class), Some("PNDMScheduler"));
    let e = err(ddim_webgpu::sampler::Scheduler::from_config(pndm).map(|_| ())).to_string();
    assert!(e.contains("PNDMScheduler"), "{e}");
    // Samplers by diffusers class name too; an unimplemented one is named.
    assert_eq!("HeunDiscreteScheduler".parse::<SamplerKind>().unwrap(), SamplerKind::Heun);
    assert_eq!("DPMSolverMultistepScheduler".parse::<SamplerKind>().unwrap(), SamplerKind::DpmPlusPlus2M);
    assert_eq!("UniPCMultistepScheduler".parse::<SamplerKind>().unwrap().as_str(), "unipc");
    let e = "FlowMatchEulerDiscreteScheduler".parse::<SamplerKind>().unwrap_err().to_string();
    assert!(e.contains("unknown scheduler class") && e.contains("FlowMatchEulerDiscreteScheduler"), "{e}");
    // The classes it implements still choose the sampler: Heun's 2 steps are 3 evaluations.
    for (class, evaluations) in [("DDIMScheduler", 2), ("HeunDiscreteScheduler", 3)] {
        let model = Model::from_bytes(&cfg, &st, Some(&format!(r#"{{"_class_name": "{class}"}}"#))).unwrap();
        assert_eq!(RunOptions::new().steps(2).plan(&model).unwrap().steps.len(), evaluations, "{class}");
    }
}

#[test]
fn recording_errors_are_popped_and_returned() {
    use ddim_webgpu::gpu::ops::affine::AffineParams;
    use ddim_webgpu::gpu::recorder::GpuRecorder;
    use ddim_webgpu::gpu::weights::GpuWeights;
    let gpu = gpu();
    let weights = GpuWeights::upload_tensors(&gpu, &Default::default()).unwrap();
    let x = gpu.upload(&[1.0; 8], "x").unwrap();
    // A bind group without the kernel's output binding: a validation error inside the scope.
    let e = err(pollster::block_on(gpu.validated("a bad dispatch", || {
        let mut r = GpuRecorder::new(&gpu, &weights, Default::default())?;
        r.record("affine.main", &[(0, &x)], &AffineParams { count: 8, scale: 1.0, shift: 0.0, _p: 0 }, 2, [1, 1, 1]);
        Ok(())
    })));
    assert!(matches!(e, Error::Gpu(_)) && e.to_string().contains("a bad dispatch"), "{e}");
    gpu.check().expect("the error was captured by the scope, not left for the device");
    // The same recording with every binding is fine.
    let out = gpu.upload(&[0.0; 8], "out").unwrap();
    pollster::block_on(gpu.validated("a good dispatch", || {
        let mut r = GpuRecorder::new(&gpu, &weights, Default::default())?;
        r.record("affine.main", &[(0, &x), (1, &out)], &AffineParams { count: 8, scale: 1.0, shift: 0.0, _p: 0 }, 2, [1, 1, 1]);
        Ok(())
    }))
    .unwrap();
}

#[test]
fn model_over_the_adapters_limits() {
    let (cfg, st) = tiny();
    let model = Model::from_bytes(&cfg, &st, None).unwrap();
    let mut engine = ddim_webgpu::gpu::unet::GpuUNet::new(gpu(), &model).unwrap();
    let max = engine.gpu.limits.max_storage_buffer_binding_size;
    // conv_in's output for this batch and size is larger than one storage binding may be.
    let side = 512;
    let n = (max / (16 * side * side * 4) + 1) as usize;
    let e = err(pollster::block_on(engine.recording(n, side as usize, side as usize)).map(|_| ()));
    assert!(matches!(e, Error::Limits(_)), "{e}");
    assert!(e.to_string().contains("bytes"), "{e}");
}

#[test]
fn cpu_ops_check_lengths_before_indexing() {
    use ddim_webgpu::model::{ConvArgs, ConvSpec};
    use ddim_webgpu::reference::ops;
    let x = randn(&[1, 2, 4, 4], 1);
    let (w, b) = (randn(&[3, 2, 3, 3], 2), randn(&[3], 3));
    let short = randn(&[1, 3, 2, 2], 4);
    let conv = ConvArgs::new(&w, &b, ConvSpec::SAME3);
    assert!(err(ops::conv2d(&x, ConvArgs { residual: Some(&short), ..conv })).to_string().contains("residual"));
    let add = randn(&[1, 2], 5);
    assert!(err(ops::conv2d(&x, ConvArgs { chan_add: Some(&add), ..conv })).to_string().contains("channel add"));
    let scalar = Tensor { shape: vec![], data: vec![1.0] };
    assert!(err(ops::linear(&scalar, &w, &b, false, false)).to_string().contains("scalar"));
    let emb = randn(&[2, 4], 6);
    let one_label = Tensor { shape: vec![1], data: vec![0.0] };
    assert!(err(ops::class_embedding_add(&emb, &randn(&[3, 4], 7), &one_label)).to_string().contains("1 labels"));
    assert!(err(ops::class_embedding_add(&emb, &randn(&[3, 5], 7), &Tensor { shape: vec![2], data: vec![0.0, 1.0] }))
        .to_string()
        .contains("table"));
}

/// One corpus case through the native API: load, plan, run a couple of steps.
fn corpus_native(case: &corpus::Case) -> ddim_webgpu::Result<()> {
    let inputs = corpus::inputs(case);
    let model = Model::from_bytes(&inputs.config, &inputs.weights, inputs.scheduler.as_deref())?;
    let mut opts = RunOptions::new();
    for (name, v) in case.run.numbers() {
        opts = match name {
            "steps" => opts.steps(v as usize),
            "eta" => opts.eta(v as f32),
            "batch" => opts.batch(v as usize),
            "class" => opts.labels(ClassLabels::All(v as i64)),
            "tolerance" => opts.tolerance(v),
            _ => opts.guidance(v as f32),
        };
    }
    if let Some(s) = &case.run.sampler {
        opts = opts.sampler(s.parse()?);
    }
    let plan = opts.plan(&model)?;
    if case.run.gpu() {
        let mut device = gpu();
        if let Some(b) = case.max_buffer_bytes {
            device.cap_buffer_bytes(b);
        }
        let mut engine = ddim_webgpu::gpu::engine::GpuEngine::new(device, &model)?;
        pollster::block_on(ddim_webgpu::run::run_to_end(&mut engine, &plan)).map(|_| ())
    } else {
        pollster::block_on(ddim_webgpu::run::run_to_end(&mut CpuEngine::new(&model), &plan)).map(|_| ())
    }
}

#[test]
fn corpus_through_the_native_api() {
    let cases = corpus::cases();
    assert!(cases.len() >= 40, "the corpus holds {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        // On a thread of its own, waited for at most 60 s: a hang fails the test instead of
        // blocking `cargo test` forever (the thread is left behind; the process ends with the test).
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = case.clone();
        std::thread::spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| corpus_native(&owned)));
            let _ = tx.send(result.map(|r| r.map_err(|e| e.to_string())));
        });
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(Ok(Ok(()))) => failures.push(format!("case {:?}: no error", case.name)),
            Ok(Ok(Err(e))) => failures.extend(corpus::mismatch(case, "native API", &e)),
            Ok(Err(_)) => failures.push(format!("case {:?}: panicked", case.name)),
            Err(_) => panic!("case {:?} hung: no answer after 60 s", case.name),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Runs `ddim` with `args`, killing it after `limit`: (exit code, stderr).
fn ddim_cli(args: &[String], limit: std::time::Duration) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ddim"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("`ddim {}` hung for {limit:?}", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (status.code(), reader.join().unwrap())
}

#[test]
fn corpus_through_the_cli() {
    let dir = std::env::temp_dir().join(format!("ddim-corpus-{}", std::process::id()));
    let mut failures = Vec::new();
    for (i, case) in corpus::cases().iter().enumerate() {
        let model = dir.join(format!("case{i}"));
        std::fs::create_dir_all(&model).unwrap();
        let inputs = corpus::inputs(case);
        std::fs::write(model.join("config.json"), &inputs.config).unwrap();
        std::fs::write(model.join("diffusion_pytorch_model.safetensors"), &inputs.weights).unwrap();
        if let Some(s) = &inputs.scheduler {
            std::fs::write(model.join("scheduler_config.json"), s).unwrap();
        }
        let mut args: Vec<String> = vec!["sample".into(), "--model".into(), model.display().to_string()];
        args.extend(["--out".into(), model.join("out.png").display().to_string()]);
        for (name, v) in case.run.numbers() {
            let flag = if name == "batch" { "num" } else { name };
            args.extend([format!("--{flag}"), format!("{v}")]);
        }
        if let Some(s) = &case.run.sampler {
            args.extend(["--sampler".into(), s.clone()]);
        }
        args.extend(["--engine".into(), if case.run.gpu() { "gpu" } else { "cpu" }.into()]);
        if let Some(b) = case.max_buffer_bytes {
            args.extend(["--max-buffer-bytes".into(), b.to_string()]);
        }
        let (code, stderr) = ddim_cli(&args, std::time::Duration::from_secs(60));
        if stderr.contains("panicked") || !matches!(code, Some(1 | 2)) {
            failures.push(format!("case {:?}: exit code {code:?}, stderr {stderr}", case.name));
        }
        failures.extend(corpus::mismatch(case, "CLI", &stderr));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

/// f16 conv weights asked of a device without shader-f16 (a device made without the feature, as
/// SwiftShader's is) are refused by name, and the device keeps its f32 weights.
#[test]
fn f16_weights_without_shader_f16_are_refused() {
    let _ = common::gpu(); // sets XDG_RUNTIME_DIR like every GPU test
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(ddim_webgpu::gpu::request_adapter(&instance, None)).unwrap();
    let limits = adapter.limits();
    let desc = wgpu::DeviceDescriptor { required_limits: limits.clone(), ..Default::default() };
    let (device, queue) = pollster::block_on(adapter.request_device(&desc)).unwrap();
    let mut gpu = pollster::block_on(ddim_webgpu::gpu::GpuDevice::from_device(device, queue, adapter.get_info(), limits)).unwrap();
    let e = gpu.set_f16_weights(true).unwrap_err();
    assert!(e.to_string().contains("shader-f16"), "{e}");
    assert!(!gpu.f16_weights);
}

/// A diffusers pipeline folder (model_index.json + unet/ + scheduler/) loads its UNet with its
/// scheduler; one without unet/ and a folder with only pickle weights are errors that say so.
#[test]
fn pipeline_folders_and_pickle_only_folders() {
    let fixture = fixtures().join("models").join("tiny_attn");
    let root = std::env::temp_dir().join(format!("ddim-pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (unet, scheduler) = (root.join("unet"), root.join("scheduler"));
    std::fs::create_dir_all(&unet).unwrap();
    std::fs::create_dir_all(&scheduler).unwrap();
    for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
        std::fs::copy(fixture.join(f), unet.join(f)).unwrap();
    }
    let sched = r#"{"_class_name": "DDPMScheduler", "beta_schedule": "linear", "num_train_timesteps": 1000}"#;
    std::fs::write(scheduler.join("scheduler_config.json"), sched).unwrap();
    let index = r#"{"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"]}"#;
    std::fs::write(root.join("model_index.json"), index).unwrap();
    let model = Model::load_dir(&root).expect("a pipeline folder loads");
    assert_eq!(model.weights.tensors.len(), Model::load_dir(&fixture).unwrap().weights.tensors.len());
    assert_eq!(model.scheduler.class_name.as_deref(), Some("DDPMScheduler"), "its scheduler/ is read");
    assert!(model.scheduler_source.contains("scheduler"), "{}", model.scheduler_source);

    std::fs::remove_dir_all(&unet).unwrap();
    let e = err(Model::load_dir(&root)).to_string();
    assert!(e.contains("model_index.json") && e.contains("unet"), "{e}");
    std::fs::write(root.join("model_index.json"), r#"{"_class_name": "X", "vae": ["diffusers", "AutoencoderKL"]}"#).unwrap();
    let e = err(Model::load_dir(&root)).to_string();
    assert!(e.contains("without a `unet` entry"), "{e}");

    let pickle = root.join("pickle");
    std::fs::create_dir_all(&pickle).unwrap();
    std::fs::copy(fixture.join("config.json"), pickle.join("config.json")).unwrap();
    std::fs::write(pickle.join("diffusion_pytorch_model.bin"), b"not read").unwrap();
    let e = err(Model::load_dir(&pickle)).to_string();
    assert!(e.contains("diffusion_pytorch_model.bin") && e.contains("safetensors"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

/// A PNG chunk: length, type, data, CRC-32 (of type and data), for hand-made PNGs.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let crc = kind.iter().chain(data).fold(!0u32, |mut c, &b| {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
        c
    });
    [&(data.len() as u32).to_be_bytes()[..], kind, data, &(!crc).to_be_bytes()].concat()
}

/// The image inputs users send the CLI's edit (PNG): a decompression bomb (a 50,000 × 50,000
/// header over a few bytes) and a truncated file are errors naming the file, within the time limit;
/// 16-bit grey, RGBA with alpha and paletted images are read (converted to the model's channels),
/// as 8-bit RGB is; a mask of the wrong size is refused naming both shapes.
#[test]
fn png_inputs_users_send_are_read_or_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("ddim-png-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = fixtures().join("models/tiny_attn");
    let run = |png: &std::path::Path| {
        let args: Vec<String> = ["edit", "--model", &model.display().to_string(), "--init", &png.display().to_string()]
            .iter()
            .map(|s| s.to_string())
            .chain(["--strength", "0.5", "--steps", "2", "--num", "1", "--engine", "cpu", "--out"].map(String::from))
            .chain([dir.join("out.png").display().to_string()])
            .collect();
        ddim_cli(&args, std::time::Duration::from_secs(60))
    };
    // IHDR: 50000 × 50000, 8-bit RGB; an IDAT of a few bytes.
    let mut ihdr = [50_000u32.to_be_bytes(), 50_000u32.to_be_bytes()].concat();
    ihdr.extend([8, 2, 0, 0, 0]);
    let bomb = [&b"\x89PNG\r\n\x1a\n"[..], &png_chunk(b"IHDR", &ihdr), &png_chunk(b"IDAT", &[0x78, 0x9c, 3, 0]), &png_chunk(b"IEND", &[])]
        .concat();
    let path = dir.join("bomb.png");
    std::fs::write(&path, bomb).unwrap();
    let (code, err) = run(&path);
    assert_ne!(code, Some(0), "a 50000 x 50000 PNG header is refused: {err}");
    assert!(err.contains("bomb.png") && err.contains("50000x50000") && err.contains("larger than"), "{err}");
    // A real 12 × 12 RGB PNG, cut in half.
    let rgb = image::RgbImage::from_fn(12, 12, |x, y| image::Rgb([(x * 20) as u8, (y * 20) as u8, 128]));
    let path = dir.join("whole.png");
    rgb.save(&path).unwrap();
    let (code, err) = run(&path);
    assert_eq!(code, Some(0), "8-bit RGB: {err}");
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.join("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (code, err) = run(&cut);
    assert_ne!(code, Some(0), "a truncated PNG is refused: {err}");
    assert!(err.contains("cut.png"), "{err}");
    // 16-bit grey and RGBA are converted.
    let grey16 = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(12, 12, |x, y| image::Luma([(x * y * 400) as u16]));
    let path = dir.join("grey16.png");
    grey16.save(&path).unwrap();
    let (code, err) = run(&path);
    assert_eq!(code, Some(0), "16-bit grey: {err}");
    let rgba = image::RgbaImage::from_fn(12, 12, |x, y| image::Rgba([(x * 20) as u8, (y * 20) as u8, 9, (x * 10) as u8]));
    let path = dir.join("rgba.png");
    rgba.save(&path).unwrap();
    let (code, err) = run(&path);
    assert_eq!(code, Some(0), "RGBA: {err}");
    // Paletted (colour type 3, a PLTE of 4 colours, 8-bit indices), written by hand: expanded.
    let mut ihdr = [12u32.to_be_bytes(), 12u32.to_be_bytes()].concat();
    ihdr.extend([8, 3, 0, 0, 0]);
    let rows: Vec<u8> = (0..12u8).flat_map(|y| std::iter::once(0).chain((0..12u8).map(move |x| (x + y) % 4))).collect();
    let adler = rows.iter().fold((1u32, 0u32), |(a, b), &v| ((a + v as u32) % 65521, (b + (a + v as u32) % 65521) % 65521));
    let n = rows.len() as u16;
    let zlib = [&[0x78, 0x01, 0x01][..], &n.to_le_bytes(), &(!n).to_le_bytes(), &rows, &((adler.1 << 16) | adler.0).to_be_bytes()].concat();
    let palette = [0, 0, 0, 255, 0, 0, 0, 255, 0, 255, 255, 255];
    let indexed = [
        &b"\x89PNG\r\n\x1a\n"[..],
        &png_chunk(b"IHDR", &ihdr),
        &png_chunk(b"PLTE", &palette),
        &png_chunk(b"IDAT", &zlib),
        &png_chunk(b"IEND", &[]),
    ]
    .concat();
    let path = dir.join("indexed.png");
    std::fs::write(&path, indexed).unwrap();
    let (code, err) = run(&path);
    assert_eq!(code, Some(0), "paletted: {err}");
    // A mask whose values are not the image's size (a safetensors `sample` of 5 × 5 for a 12 × 12
    // model; a PNG mask is resized like an image) is refused naming both shapes.
    let mask = dir.join("mask.safetensors");
    let t = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 1, 5, 5], &[0u8; 100]).unwrap();
    std::fs::write(&mask, safetensors::serialize([("sample", t)], None).unwrap()).unwrap();
    let args: Vec<String> = ["inpaint", "--model", &model.display().to_string(), "--init", &dir.join("whole.png").display().to_string()]
        .iter()
        .map(|s| s.to_string())
        .chain(["--mask".into(), mask.display().to_string()])
        .chain(["--steps", "2", "--num", "1", "--engine", "cpu", "--out"].map(String::from))
        .chain([dir.join("out.png").display().to_string()])
        .collect();
    let (code, err) = ddim_cli(&args, std::time::Duration::from_secs(60));
    assert_ne!(code, Some(0), "a 5 × 5 mask for a 12 × 12 model is refused: {err}");
    assert!(err.contains("mask") && err.contains("[1, 1, 5, 5]") && err.contains("12"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
