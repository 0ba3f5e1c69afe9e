//! The engine a command runs on (`--engine`, an `engines::EngineChoice`), made.

use ddim_webgpu::engines::{AnyEngine, EngineChoice};
use ddim_webgpu::fast::FastOps;
use ddim_webgpu::gpu::engine::GpuEngine;
use ddim_webgpu::gpu::GpuDevice;
use ddim_webgpu::run::CpuEngine;
use ddim_webgpu::{Model, Result};

use crate::CommonArgs;

/// The local adapter, named on stderr.
pub fn gpu() -> Result<GpuDevice> {
    let gpu = pollster::block_on(GpuDevice::new())?;
    eprintln!("adapter: {}", gpu.adapter_name());
    Ok(gpu)
}

/// The engine of `args`, and the device-loss test hook's device for the GPU engine
/// (`DDIM_TEST_LOSE_DEVICE_AT_STEP=N` loses it after step N, 0-based, as a driver reset would).
pub fn make_engine(args: &CommonArgs, model: &Model) -> Result<(AnyEngine, Option<(wgpu::Device, usize)>)> {
    let (mut engine, lose) = make_unet_engine(args, model)?;
    if let Some(clf) = args.classifier()? {
        engine.set_classifier(&clf)?;
        eprintln!("classifier: {} parameters, {} classes", clf.parameters, clf.config.num_classes);
    }
    Ok((engine, lose))
}

fn make_unet_engine(args: &CommonArgs, model: &Model) -> Result<(AnyEngine, Option<(wgpu::Device, usize)>)> {
    Ok(match args.engine() {
        EngineChoice::Reference => {
            eprintln!("engine: CPU reference");
            (AnyEngine::Reference(CpuEngine::reference(model)), None)
        }
        EngineChoice::Cpu { threads } => {
            let mut ops = FastOps::new(model);
            if let Some(n) = threads {
                ops = ops.with_threads(n);
            }
            let cpu = CpuEngine::with_ops(model, ops);
            eprintln!("engine: fast CPU ({}, {} threads)", cpu.ops().kernel_name(), cpu.ops().threads());
            (AnyEngine::Cpu(cpu), None)
        }
        EngineChoice::Gpu => {
            let mut gpu = gpu()?;
            if let Some(bytes) = args.max_buffer_bytes {
                gpu.cap_buffer_bytes(bytes);
            }
            if args.f16_weights {
                gpu.set_f16_weights(true)?;
            }
            let lose = std::env::var("DDIM_TEST_LOSE_DEVICE_AT_STEP").ok().and_then(|s| s.parse().ok()).map(|at| (gpu.device.clone(), at));
            (AnyEngine::Gpu(Box::new(GpuEngine::new(gpu, model)?)), lose)
        }
    })
}
