//! `benchmarkConfig`: how fast and how large a model of a given `config.json` runs in this
//! browser, on seeded random weights (no download): ms per forward and the memory it took, on the
//! CPU engine (this thread, the lean fast engine) or the WebGPU engine within WebGPU's default
//! buffer limits. `tests/page/scale_bench.mjs` (part of `./build.sh bench`) runs it on the shapes of
//! google/ddpm-cifar10-32 and google/ddpm-celebahq-256.

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;

use super::js_err;
use crate::gpu::unet::GpuUNet;
use crate::gpu::GpuDevice;
use crate::reference::profile::now_ms;
use crate::{Error, Model, Tensor};

/// WebGPU's default maxStorageBufferBindingSize (128 MiB): the model must fit without asking for more.
const DEFAULT_BINDING_BYTES: u64 = 128 << 20;

/// `{engine, params, weightsBytes, msPerForward: [..], memoryBytes, what}` for `reps` forwards of
/// batch `batch` at the config's sample size; `engine` is "cpu" or "webgpu".
#[wasm_bindgen(js_name = benchmarkConfig)]
pub async fn benchmark_config(config_json: String, engine: String, batch: u32, reps: u32) -> Result<JsValue, JsValue> {
    let model = Model::random(&config_json, 0).map_err(js_err)?;
    let cfg = model.config.clone();
    let (h, w) = cfg.sample_size.unwrap_or((32, 32));
    let n = batch.max(1) as usize;
    let len = n * cfg.in_channels * h * w;
    let x = Tensor::new(vec![n, cfg.in_channels, h, w], crate::sampler::rng::normal(1, 0, len)).map_err(js_err)?;
    let ts = vec![500.0; n];
    let labels = cfg.num_class_embeds.map(|_| vec![0u32; n]);
    let params = model.weights.parameter_count() as f64;
    let mut ms = Vec::new();
    let (memory, what) = match engine.as_str() {
        "cpu" => {
            let mut ops = crate::fast::FastOps::from_model(model);
            // The threaded build's instance also runs on its fork workers (cpu-worker-threads.js).
            let what = match ops.threads() {
                1 => format!("fast CPU engine ({}), this thread", ops.kernel_name()),
                t => format!("fast CPU engine ({}), {t} wasm threads", ops.kernel_name()),
            };
            for _ in 0..reps.max(1) {
                let start = now_ms();
                crate::reference::forward_with(&mut ops, &cfg, &x, &ts, labels.as_deref()).map_err(js_err)?;
                ms.push(now_ms() - start);
            }
            (
                wasm_bindgen::memory()
                    .unchecked_into::<js_sys::WebAssembly::Memory>()
                    .buffer()
                    .unchecked_into::<js_sys::ArrayBuffer>()
                    .byte_length() as f64,
                what,
            )
        }
        "webgpu" => {
            let mut gpu = GpuDevice::new().await.map_err(js_err)?;
            gpu.cap_buffer_bytes(DEFAULT_BINDING_BYTES);
            let what = format!("WebGPU, {}; conv2d: {}", gpu.adapter_name(), gpu.conv_variant());
            let mut unet = GpuUNet::new(gpu, &model).map_err(js_err)?;
            for _ in 0..reps.max(1) {
                let start = now_ms();
                unet.forward(&x, &ts, labels.as_deref()).await.map_err(js_err)?;
                ms.push(now_ms() - start);
            }
            (unet.gpu.live_buffers().1 as f64, what)
        }
        other => return Err(js_err(Error::Input(format!("benchmarkConfig: engine {other:?} is not \"cpu\" or \"webgpu\"")))),
    };
    let out = Object::new();
    let set = |k: &str, v: JsValue| Reflect::set(&out, &k.into(), &v).map(|_| ());
    set("engine", engine.into())?;
    set("what", what.into())?;
    set("params", params.into())?;
    set("weightsBytes", (params * 4.0).into())?;
    set("msPerForward", ms.iter().map(|&v| JsValue::from(v)).collect::<js_sys::Array>().into())?;
    set("memoryBytes", memory.into())?;
    Ok(out.into())
}
