//! Shared test helpers: fixture loading, the GPU, tolerances.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use ddim_webgpu::engines::AnyEngine;
use ddim_webgpu::gpu::engine::GpuEngine;
use ddim_webgpu::gpu::GpuDevice;
use ddim_webgpu::run::CpuEngine;
use ddim_webgpu::Tensor;
use safetensors::{Dtype, SafeTensors};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every tensor of a safetensors file as f32 (floats and integers converted).
pub fn load(path: &std::path::Path) -> HashMap<String, Tensor> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).expect("fixture parses");
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let b = v.data();
            let data: Vec<f32> = match v.dtype() {
                Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
                Dtype::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
                Dtype::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
                d => panic!("unexpected dtype {d:?} in fixture"),
            };
            (name, Tensor { shape: v.shape().to_vec(), data })
        })
        .collect()
}

pub fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

/// The GPU every native test runs on (lavapipe in CI). No adapter is a test failure, not a skip.
pub fn gpu() -> GpuDevice {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    pollster::block_on(GpuDevice::new()).expect("a WebGPU adapter (install mesa-vulkan-drivers for lavapipe)")
}

/// The adapter with the conv path real GPUs take (`GpuDevice::from_device` on a non-CPU adapter):
/// the 4×4 GEMM tile in workgroups of 64, no Winograd.
pub fn gpu_tile_path() -> GpuDevice {
    let mut gpu = gpu();
    gpu.set_gemm(4, 64);
    gpu.conv.winograd = false;
    gpu.check().expect("the gemm4x4 pipelines build");
    gpu
}

/// Every engine a whole-run suite checks natively, with its label: the fast CPU engine, the
/// reference, the GPU on this adapter's own conv path and on the real GPUs' (`gpu_tile_path`).
pub fn every_engine(model: &ddim_webgpu::Model) -> Vec<(&'static str, AnyEngine)> {
    let gpu_engine = |gpu| Box::new(GpuEngine::new(gpu, model).expect("the GPU engine loads the model"));
    vec![
        ("fast cpu", AnyEngine::Cpu(CpuEngine::new(model))),
        ("reference cpu", AnyEngine::Reference(CpuEngine::reference(model))),
        ("gpu", AnyEngine::Gpu(gpu_engine(gpu()))),
        ("gpu, gemm4x4 in 64, no winograd", AnyEngine::Gpu(gpu_engine(gpu_tile_path()))),
    ]
}

/// Asserts |got − want| ≤ tol · max(1, max|want|) elementwise, naming the case.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    let scale = want.max_abs().max(1.0);
    let diff = got.max_abs_diff(want);
    assert!(diff <= tol * scale, "{what}: max |diff| = {diff:e} > {tol:e} × {scale}");
}

/// Asserts |got − want| ≤ tol · max|want| (the kernel-vs-reference criterion).
pub fn assert_close_rel(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    let scale = want.max_abs().max(f32::MIN_POSITIVE);
    let diff = got.max_abs_diff(want);
    assert!(diff <= tol * scale, "{what}: max |diff| = {diff:e} > {tol:e} × {scale}");
}

pub fn randn(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor { shape: shape.to_vec(), data: ddim_webgpu::sampler::rng::normal(seed, 7, n) }
}

pub fn scaled(t: Tensor, s: f32) -> Tensor {
    Tensor { shape: t.shape, data: t.data.into_iter().map(|v| v * s).collect() }
}

/// Runs `plan` to the end on `engine`: (x after the first evaluation, the final sample), the two
/// points the trajectory fixtures pin (forward-process frames come before the first evaluation).
pub fn first_and_last<E: ddim_webgpu::run::Engine>(engine: &mut E, plan: &ddim_webgpu::run::RunPlan) -> (Tensor, Tensor) {
    use ddim_webgpu::run::{run, Flow, Phase, View};
    let mut first = None;
    let last = pollster::block_on(run(engine, plan, async |e: &mut E, info| {
        if first.is_none() && info.phase != Phase::Forward {
            first = Some(e.read(View::Xt).await?);
        }
        Ok(Flow::Continue)
    }))
    .unwrap();
    (first.unwrap(), last)
}

/// The CPU microkernels this machine has, which the op and U-Net suites test, printed so a log
/// says which ran. `DDIM_REQUIRE_KERNELS=avx512,avx2` (a bench machine's setting) makes a listed
/// kernel the CPU lacks a failure instead of a silent skip.
#[allow(dead_code)]
pub fn tested_kernels() -> Vec<ddim_webgpu::fast::gemm::Kernel> {
    let kernels = ddim_webgpu::fast::gemm::Kernel::available();
    let ids: Vec<&str> = kernels.iter().map(|k| k.id()).collect();
    eprintln!("CPU kernels tested: {}", kernels.iter().map(|k| k.name()).collect::<Vec<_>>().join("; "));
    if let Ok(required) = std::env::var("DDIM_REQUIRE_KERNELS") {
        let missing: Vec<&str> = required.split(',').map(str::trim).filter(|r| !r.is_empty() && !ids.contains(r)).collect();
        assert!(missing.is_empty(), "DDIM_REQUIRE_KERNELS={required}: this CPU lacks {missing:?} (it has {ids:?})");
    }
    kernels
}
