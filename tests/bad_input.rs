#![cfg(not(target_arch = "wasm32"))]
//! Every kind of bad input is answered by a typed error whose message names the problem; nothing
//! panics or hangs.

mod common;

use common::*;
use ddim_webgpu::sampler::{NoiseSource, RunPlan, SampleOptions, Schedule, SchedulerConfig};
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
    let views: Vec<_> = owned.iter().map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
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
        if name == "conv_in.bias" { *dt = Dtype::I32; *shape = vec![data.len() / 4]; }
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
        ("act_fn", serde_json::json!("gelu")),
        ("time_embedding_type", serde_json::json!("fourier")),
        ("resnet_time_scale_shift", serde_json::json!("scale_shift")),
        ("down_block_types", serde_json::json!(["DownBlock2D", "CrossAttnDownBlock2D", "AttnDownBlock2D"])),
        ("sample_size", serde_json::json!(10)),
        ("class_embed_type", serde_json::json!("timestep")),
        ("mid_block_type", serde_json::json!("UNetMidBlock2DCrossAttn")),
        ("attention_head_dim", serde_json::json!(64)),
    ] {
        let e = err(with_config(|v| v[field] = value.clone()));
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
    let e = err(Model::from_bytes("{not json", &[], None));
    assert!(matches!(e, Error::Config(_)), "{e}");
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
        let e = err(ddim_webgpu::cpu::forward(&model, &x, &t, labels.as_deref()));
        assert!(e.to_string().contains(word), "{word}: {e}");
    }
    let class = Model::load_dir(&fixtures().join("models/class_f16")).unwrap();
    let x = Tensor::zeros(vec![1, 1, 8, 8]);
    assert!(err(ddim_webgpu::cpu::forward(&class, &x, &[1.0], Some(&[5]))).to_string().contains("out of range"));
    assert!(err(ddim_webgpu::cpu::forward(&class, &x, &[1.0], None)).to_string().contains("class labels are required"));
}

#[test]
fn bad_sampler_settings() {
    let s = Schedule::new(SchedulerConfig::default()).unwrap();
    assert!(err(s.ddim_steps(0, 0.0)).to_string().contains("0 inference steps"));
    assert!(err(s.ddim_steps(1001, 0.0)).to_string().contains("more than num_train_timesteps"));
    assert!(err(s.ddim_steps(10, -0.5)).to_string().contains("eta"));
    assert!(err(Schedule::from_json(r#"{"beta_schedule": "sigmoid"}"#)).to_string().contains("beta_schedule"));
    assert!(err(Schedule::from_json(r#"{"prediction_type": "flow"}"#)).to_string().contains("prediction_type"));
    assert!(err(Schedule::from_json(r#"{"thresholding": true}"#)).to_string().contains("thresholding"));
    assert!(err(Schedule::from_json(r#"{"timestep_spacing": "karras"}"#.replace("karras", "uniform").as_str()).and_then(|s| s.timesteps(10))).to_string().contains("timestep_spacing"));
    let class = Model::load_dir(&fixtures().join("models/class_f16")).unwrap();
    let opts = SampleOptions { batch: 2, class_labels: Some(vec![1]), ..Default::default() };
    assert!(err(RunPlan::new(&class, &s, &opts, NoiseSource::Seed(0), 8, 8)).to_string().contains("class labels for a batch"));
    let opts = SampleOptions { batch: 1, class_labels: Some(vec![1]), guidance: -1.0, ..Default::default() };
    assert!(err(RunPlan::new(&class, &s, &opts, NoiseSource::Seed(0), 8, 8)).to_string().contains("guidance"));
    let opts = SampleOptions { batch: 1, ..Default::default() };
    assert!(err(RunPlan::new(&class, &s, &opts, NoiseSource::Seed(0), 8, 8)).to_string().contains("class-conditional"));
}

#[test]
fn model_over_the_adapters_limits() {
    let (cfg, st) = tiny();
    let model = Model::from_bytes(&cfg, &st, None).unwrap();
    let mut engine = ddim_webgpu::gpu::recording::GpuUNet::new(gpu(), &model).unwrap();
    let max = engine.gpu.limits.max_storage_buffer_binding_size;
    // conv_in's output for this batch and size is larger than one storage binding may be.
    let side = 512;
    let n = (max / (16 * side * side * 4) + 1) as usize;
    let e = err(engine.program(n, side as usize, side as usize).map(|_| ()));
    assert!(matches!(e, Error::Limits(_)), "{e}");
    assert!(e.to_string().contains("bytes"), "{e}");
}
