//! The browser suite (wasm-bindgen-test in headless Chromium, WebGPU on SwiftShader): every WGSL
//! kernel against the CPU reference on small odd shapes, one fixture U-Net against diffusers, and
//! the pinned noise bits. Inputs are small: SwiftShader emulates the GPU on the CPU.
#![cfg(target_arch = "wasm32")]

use std::collections::HashMap;
use std::sync::Arc;

use ddim_webgpu::cpu::CpuOps;
use ddim_webgpu::gpu::recorder::{run_now, GpuRecorder, GpuTensor};
use ddim_webgpu::gpu::recording::GpuUNet;
use ddim_webgpu::gpu::GpuDevice;
use ddim_webgpu::model::{UNetOps, ConvSpec};
use ddim_webgpu::{Model, Result, Tensor};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor { shape: shape.to_vec(), data: ddim_webgpu::sampler::rng::normal(seed, 7, shape.iter().product()) }
}

fn close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.shape, want.shape, "{what}");
    let d = got.max_abs_diff(want);
    assert!(d <= tol * want.max_abs().max(f32::MIN_POSITIVE), "{what}: max |diff| {d:e} vs max {}", want.max_abs());
}

async fn check(gpu: &GpuDevice, what: &str, w: &HashMap<String, Tensor>, inputs: &[&Tensor], tol: f32,
               op: impl Fn(&mut dyn OpRunner, Vec<Handle>) -> Result<Handle>) {
    let got = run_now(gpu, w, inputs, |b, ins| {
        let mut r = GpuRunner(b);
        match op(&mut r, ins.iter().cloned().map(Handle::Gpu).collect())? { Handle::Gpu(t) => Ok(t), Handle::Cpu(_) => unreachable!() }
    }).await.unwrap();
    let mut cpu = CpuOps::from_tensors(w);
    let mut r = CpuRunner(&mut cpu);
    let want = match op(&mut r, inputs.iter().map(|t| Handle::Cpu(Arc::new((*t).clone()))).collect()).unwrap() {
        Handle::Cpu(t) => t, Handle::Gpu(_) => unreachable!() };
    close(what, &got, &want, tol);
}

/// The same op body on either backend (burn's "write the test once").
#[derive(Clone)]
enum Handle { GpuDevice(GpuTensor), Cpu(Arc<Tensor>) }

trait OpRunner {
    fn conv(&mut self, x: &Handle, spec: ConvSpec) -> Result<Handle>;
    fn norm(&mut self, x: &Handle, groups: usize, silu: bool) -> Result<Handle>;
    fn linear(&mut self, x: &Handle, si: bool, so: bool) -> Result<Handle>;
    fn temb(&mut self, t: &Handle, dim: usize, flip: bool, shift: f32) -> Result<Handle>;
    fn attn(&mut self, q: &Handle, k: &Handle, v: &Handle, heads: usize, d: usize) -> Result<Handle>;
    fn concat(&mut self, a: &Handle, b: &Handle) -> Result<Handle>;
    fn affine(&mut self, x: &Handle) -> Result<Handle>;
}

macro_rules! runner {
    ($name:ident, $backend:ty, $variant:ident) => {
        struct $name<'a, 'b>(&'a mut $backend, std::marker::PhantomData<&'b ()>);
        impl OpRunner for $name<'_, '_> {
            fn conv(&mut self, x: &Handle, spec: ConvSpec) -> Result<Handle> {
                let Handle::$variant(x) = x else { unreachable!() };
                let (w, b) = (self.0.weight("w")?, self.0.weight("b")?);
                Ok(Handle::$variant(self.0.conv2d(x, &w, &b, spec, None, None, 1.0)?))
            }
            fn norm(&mut self, x: &Handle, groups: usize, silu: bool) -> Result<Handle> {
                let Handle::$variant(x) = x else { unreachable!() };
                let (g, b) = (self.0.weight("g")?, self.0.weight("b")?);
                Ok(Handle::$variant(self.0.group_norm(x, &g, &b, groups, 1e-5, silu)?))
            }
            fn linear(&mut self, x: &Handle, si: bool, so: bool) -> Result<Handle> {
                let Handle::$variant(x) = x else { unreachable!() };
                let (w, b) = (self.0.weight("w")?, self.0.weight("b")?);
                Ok(Handle::$variant(self.0.linear(x, &w, &b, si, so)?))
            }
            fn temb(&mut self, t: &Handle, dim: usize, flip: bool, shift: f32) -> Result<Handle> {
                let Handle::$variant(t) = t else { unreachable!() };
                Ok(Handle::$variant(self.0.timestep_embedding(t, dim, flip, shift)?))
            }
            fn attn(&mut self, q: &Handle, k: &Handle, v: &Handle, heads: usize, d: usize) -> Result<Handle> {
                let (Handle::$variant(q), Handle::$variant(k), Handle::$variant(v)) = (q, k, v) else { unreachable!() };
                Ok(Handle::$variant(self.0.attention(q, k, v, heads, d)?))
            }
            fn concat(&mut self, a: &Handle, b: &Handle) -> Result<Handle> {
                let (Handle::$variant(a), Handle::$variant(b)) = (a, b) else { unreachable!() };
                Ok(Handle::$variant(self.0.concat_channels(a, b)?))
            }
            fn affine(&mut self, x: &Handle) -> Result<Handle> {
                let Handle::$variant(x) = x else { unreachable!() };
                Ok(Handle::$variant(self.0.affine(x, 2.0, -1.0)?))
            }
        }
    };
}
runner!(GpuRunnerImpl, GpuRecorder<'b>, GpuDevice);
runner!(CpuRunnerImpl, CpuOps, Cpu);

#[allow(non_snake_case)]
fn GpuRunner<'a, 'b>(b: &'a mut GpuRecorder<'b>) -> GpuRunnerImpl<'a, 'b> { GpuRunnerImpl(b, std::marker::PhantomData) }
#[allow(non_snake_case)]
fn CpuRunner<'a>(b: &'a mut CpuOps) -> CpuRunnerImpl<'a, 'static> { CpuRunnerImpl(b, std::marker::PhantomData) }

async fn gpu() -> GpuDevice {
    GpuDevice::new().await.expect("WebGPU adapter in headless Chromium (--enable-unsafe-webgpu)")
}

#[wasm_bindgen_test]
async fn kernels_match_cpu_reference_in_the_browser() {
    let gpu = gpu().await;
    let conv = |o: usize, i: usize, k: usize| HashMap::from([
        ("w".to_string(), Tensor { shape: vec![o, i, k, k], data: randn(&[o * i * k * k], 1).data.iter().map(|v| v * 0.3).collect() }),
        ("b".to_string(), randn(&[o], 2))]);
    for (name, k, spec, shape, co) in [
        ("conv 3x3", 3, ConvSpec::SAME3, [2, 5, 7, 9], 6),
        ("conv 3x3 s2 asym", 3, ConvSpec { stride: 2, pad: [0, 0, 1, 1], upsample: false }, [1, 3, 10, 6], 5),
        ("conv 1x1", 1, ConvSpec::POINTWISE, [1, 13, 5, 3], 9),
        ("upsample conv", 3, ConvSpec { upsample: true, ..ConvSpec::SAME3 }, [1, 5, 3, 5], 3),
    ] {
        let x = randn(&shape, 3);
        check(&gpu, name, &conv(co, shape[1], k), &[&x], 1e-5, move |r, i| r.conv(&i[0], spec)).await;
    }
    let norm = HashMap::from([("g".to_string(), randn(&[12], 4)), ("b".to_string(), randn(&[12], 5))]);
    check(&gpu, "group_norm+silu", &norm, &[&randn(&[2, 12, 5, 7], 6)], 1e-5, |r, i| r.norm(&i[0], 3, true)).await;
    let lin = HashMap::from([("w".to_string(), randn(&[17, 13], 7)), ("b".to_string(), randn(&[17], 8))]);
    check(&gpu, "linear", &lin, &[&randn(&[3, 13], 9)], 1e-5, |r, i| r.linear(&i[0], true, false)).await;
    let t = Tensor { shape: vec![4], data: vec![0.0, 17.0, 500.0, 999.0] };
    check(&gpu, "timestep_embedding", &HashMap::new(), &[&t], 1.5e-4, |r, i| r.temb(&i[0], 32, true, 0.0)).await;
    let s = [2, 6, 4, 5];
    let (q, k, v) = (randn(&s, 10), randn(&s, 11), randn(&s, 12));
    check(&gpu, "attention", &HashMap::new(), &[&q, &k, &v], 1e-5, |r, i| r.attn(&i[0], &i[1], &i[2], 2, 3)).await;
    let (a, b) = (randn(&[2, 3, 4, 5], 13), randn(&[2, 2, 4, 5], 14));
    check(&gpu, "concat", &HashMap::new(), &[&a, &b], 0.0, |r, i| r.concat(&i[0], &i[1])).await;
    check(&gpu, "affine", &HashMap::new(), &[&a], 1e-6, |r, i| r.affine(&i[0])).await;
}

fn load(bytes: &[u8]) -> HashMap<String, Tensor> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    st.tensors().into_iter().map(|(n, v)| {
        let b = v.data();
        let data = match v.dtype() {
            safetensors::Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            safetensors::Dtype::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            d => panic!("{d:?}"),
        };
        (n, Tensor { shape: v.shape().to_vec(), data })
    }).collect()
}

#[wasm_bindgen_test]
async fn fixture_unet_matches_diffusers_in_the_browser() {
    let model = Model::from_bytes(include_str!("fixtures/models/class_f16/config.json"),
                                  include_bytes!("fixtures/models/class_f16/diffusion_pytorch_model.safetensors"), None).unwrap();
    let io = load(include_bytes!("fixtures/models/class_f16/io.safetensors"));
    let labels: Vec<u32> = io["class_labels"].data.iter().map(|&v| v as u32).collect();
    let want = &io["out"];
    let tol = 1e-3 * want.max_abs().max(1.0);
    let mut engine = GpuEngine::new(gpu().await, &model).unwrap();
    let got = engine.forward(&io["sample"], &io["timestep"].data, Some(&labels)).await.unwrap();
    assert!(got.max_abs_diff(want) <= tol, "gpu: {}", got.max_abs_diff(want));
    let cpu = ddim_webgpu::cpu::forward(&model, &io["sample"], &io["timestep"].data, Some(&labels)).unwrap();
    assert!(cpu.max_abs_diff(want) <= tol, "cpu (wasm): {}", cpu.max_abs_diff(want));
}

#[wasm_bindgen_test]
fn noise_bits_match_native() {
    // Same pinned values as tests/rng.rs natively.
    let bits: Vec<u32> = ddim_webgpu::sampler::rng::normal(42, 0, 6).iter().map(|x| x.to_bits()).collect();
    assert_eq!(bits, [1063448960, 1054929735, 3189792326, 3160458319, 3204250302, 3200158888]);
}
