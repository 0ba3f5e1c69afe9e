#![cfg(not(target_arch = "wasm32"))]
//! The whole U-Net, on the CPU reference and on the GPU, against diffusers' output for every
//! fixture model (tests/fixtures/models/*/io.safetensors). Tolerance 1e-4 × max(1, max|ref|) (measured ~6e-6).

mod common;

use common::*;
use ddim_webgpu::gpu::unet::GpuUNet;
use ddim_webgpu::Model;

/// The first four: the options the bundled model's family uses; the rest: score-SDE NCSN++
/// (Fourier, Skip blocks, FIR), consistency models (resnet resamplers, AdaGN, no mid-attention
/// norm), learned time embeddings, "timestep" class embeddings and the other act_fn values.
const MODELS: &[&str] = &[
    "tiny_attn",
    "cifar_like",
    "class_f16",
    "no_mid_attn",
    "ncsnpp_like",
    "cm_like",
    "learned_mish",
    "gelu_timestep_class",
    "relu_up_resnet",
];

fn case(name: &str) -> (Model, ddim_webgpu::Tensor, Vec<f32>, Option<Vec<u32>>, ddim_webgpu::Tensor) {
    let dir = fixtures().join("models").join(name);
    let model = Model::load_dir(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    let io = load(&dir.join("io.safetensors"));
    let labels = io.get("class_labels").map(|l| l.data.iter().map(|&v| v as u32).collect());
    (model, io["sample"].clone(), io["timestep"].data.clone(), labels, io["out"].clone())
}

#[test]
fn cpu_unet_matches_diffusers() {
    for name in MODELS {
        let (model, x, t, labels, want) = case(name);
        let got = ddim_webgpu::reference::forward(&model, &x, &t, labels.as_deref()).unwrap();
        assert_close(&format!("{name} (cpu)"), &got, &want, 1e-4);
    }
}

#[test]
fn fast_cpu_unet_matches_diffusers() {
    for name in MODELS {
        let (model, x, t, labels, want) = case(name);
        let mut ops = ddim_webgpu::fast::FastOps::new(&model);
        let got = ddim_webgpu::reference::forward_with(&mut ops, &model.config, &x, &t, labels.as_deref()).unwrap();
        assert_close(&format!("{name} (fast cpu, {})", ops.kernel_name()), &got, &want, 1e-4);
        // Every other microkernel this CPU has.
        for kernel in common::tested_kernels().into_iter().skip(1) {
            let mut ops = ddim_webgpu::fast::FastOps::new(&model).with_kernel(kernel);
            let got = ddim_webgpu::reference::forward_with(&mut ops, &model.config, &x, &t, labels.as_deref()).unwrap();
            assert_close(&format!("{name} (fast cpu, {})", kernel.name()), &got, &want, 1e-4);
        }
        // The engine that took the weights over (packed convs only) computes the same.
        let config = model.config.clone();
        let mut owned = ddim_webgpu::fast::FastOps::from_model(model);
        let again = ddim_webgpu::reference::forward_with(&mut owned, &config, &x, &t, labels.as_deref()).unwrap();
        assert_eq!(got, again, "{name}: from_model differs from new");
    }
}

#[test]
fn gpu_unet_matches_diffusers() {
    for name in MODELS {
        let (model, x, t, labels, want) = case(name);
        let mut engine = GpuUNet::new(common::gpu(), &model).unwrap();
        let got = pollster::block_on(engine.forward(&x, &t, labels.as_deref())).unwrap();
        assert_close(&format!("{name} (gpu)"), &got, &want, 1e-4);
        // A replay of the recorded forward gives the same answer (buffers reused correctly).
        let again = pollster::block_on(engine.forward(&x, &t, labels.as_deref())).unwrap();
        assert_eq!(got, again, "{name}: replay differs");
    }
}

/// The conv path of real GPUs (`from_device` picks it for every adapter but a CPU one): the 4×4
/// GEMM tile (`gemm4x4`) in workgroups of 64, no Winograd. This machine's adapter (lavapipe) would
/// otherwise run the 8×8 tile with Winograd, so without this test no whole U-Net ran that path.
#[test]
fn gpu_unet_on_the_gpu_tile_path_matches_diffusers() {
    for name in MODELS {
        let (model, x, t, labels, want) = case(name);
        let mut engine = GpuUNet::new(gpu_tile_path(), &model).unwrap();
        let got = pollster::block_on(engine.forward(&x, &t, labels.as_deref())).unwrap();
        assert_close(&format!("{name} (gpu, gemm4x4 in 64, no winograd)"), &got, &want, 1e-4);
    }
}

/// The GPU with its conv weights stored as f16 (`set_f16_weights`) computes what the reference
/// computes with those weights rounded to f16, at the f32 engine's tolerance.
#[test]
fn gpu_unet_with_f16_conv_weights_matches_reference_on_rounded_weights() {
    for name in MODELS {
        let (model, x, t, labels, _) = case(name);
        let mut gpu = common::gpu();
        gpu.set_f16_weights(true).expect("lavapipe has shader-f16");
        let mut engine = GpuUNet::new(gpu, &model).unwrap();
        let got = pollster::block_on(engine.forward(&x, &t, labels.as_deref())).unwrap();
        let mut rounded = model.clone();
        for w in rounded.weights.tensors.values_mut().filter(|w| w.shape.len() == 4) {
            w.data.iter_mut().for_each(|v| *v = half::f16::from_f32(*v).to_f32());
        }
        let want = ddim_webgpu::reference::forward(&rounded, &x, &t, labels.as_deref()).unwrap();
        assert_close(&format!("{name} (gpu, f16 conv weights)"), &got, &want, 1e-4);
    }
}

#[test]
fn legacy_and_f16_checkpoints_are_read() {
    let (model, ..) = case("cifar_like");
    assert!(model.weights.tensors.contains_key("down_blocks.1.attentions.0.to_q.weight"), "legacy `query` renamed to `to_q`");
    let (model, ..) = case("class_f16");
    assert_eq!(model.weights.stored_dtype, "F16");
    assert_eq!(model.config.num_class_embeds, Some(5));
}

/// The bundled default model (weights/mnist-cond) against diffusers, on both engines.
#[test]
fn bundled_model_matches_diffusers() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/mnist-cond");
    let model = Model::load_dir(&dir).expect("the bundled model loads");
    assert_eq!(model.weights.stored_dtype, "F16");
    let io = load(&fixtures().join("bundled_io.safetensors"));
    let labels: Vec<u32> = io["class_labels"].data.iter().map(|&v| v as u32).collect();
    let cpu = ddim_webgpu::reference::forward(&model, &io["sample"], &io["timestep"].data, Some(&labels)).unwrap();
    assert_close("bundled (cpu)", &cpu, &io["out"], 1e-4);
    let mut ops = ddim_webgpu::fast::FastOps::new(&model);
    let fast = ddim_webgpu::reference::forward_with(&mut ops, &model.config, &io["sample"], &io["timestep"].data, Some(&labels)).unwrap();
    assert_close("bundled (fast cpu)", &fast, &io["out"], 1e-4);
    let mut engine = GpuUNet::new(common::gpu(), &model).unwrap();
    let gpu = pollster::block_on(engine.forward(&io["sample"], &io["timestep"].data, Some(&labels))).unwrap();
    assert_close("bundled (gpu)", &gpu, &io["out"], 1e-4);
}

/// A forward whose convs split their output channels (and Winograd's input transform its input
/// channels) across threads (`fast::fork`; the cost model overruled so that every conv splits,
/// into 2 and 3 uneven shares) computes the same bits as one thread: a split hands out whole
/// channel tiles, each summed as it is alone. The shape of
/// google/ddpm-cifar10-32 (128–256 channels: several channel tiles per conv) at 8×8, random weights.
#[test]
fn fast_cpu_convs_split_across_threads_compute_the_same_bits() {
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bench/configs/ddpm-cifar10-32.json")).unwrap(),
    )
    .unwrap();
    config["sample_size"] = 8.into();
    let model = Model::random(&config.to_string(), 3).unwrap();
    let x = ddim_webgpu::Tensor::new(vec![1, 3, 8, 8], ddim_webgpu::sampler::rng::normal(5, 0, 3 * 64)).unwrap();
    let t = [321.0];
    // Winograd making its U per run: the 3×3 convs split their input transform by channels and
    // their GEMMs by groups of output channels (at 8 × 8, U would be kept or the convs direct).
    for making_u in [false, true] {
        let ops = || {
            let ops = ddim_webgpu::fast::FastOps::new(&model).with_threads(1);
            if making_u {
                ops.with_winograd_making_u()
            } else {
                ops
            }
        };
        let want = ddim_webgpu::reference::forward_with(&mut ops(), &model.config, &x, &t, None).unwrap();
        for threads in [2, 3] {
            let forced = ddim_webgpu::fast::fork::Split { threads, min_share_forks: 0.0 };
            let got = ddim_webgpu::reference::forward_with(&mut ops().with_split(forced), &model.config, &x, &t, None).unwrap();
            assert_eq!(got, want, "{threads} threads (Winograd making U: {making_u}): the split differs from one thread");
        }
    }
}
