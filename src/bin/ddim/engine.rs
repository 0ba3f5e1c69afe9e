//! Which engine a command runs on (`--engine gpu|cpu|reference`), chosen at run time.

use ddim_webgpu::gpu::engine::GpuEngine;
use ddim_webgpu::gpu::GpuDevice;
use ddim_webgpu::run::{self, CpuEngine, Engine, View};
use ddim_webgpu::{Model, Result, Tensor};

use crate::{CommonArgs, EngineArg};

/// The local adapter, named on stderr.
pub fn gpu() -> Result<GpuDevice> {
    let gpu = pollster::block_on(GpuDevice::new())?;
    eprintln!("adapter: {}", gpu.adapter_name());
    Ok(gpu)
}

/// The engine a command runs on, chosen at run time.
pub enum AnyEngine {
    Gpu(Box<GpuEngine>),
    Cpu(CpuEngine),
    Reference(CpuEngine<ddim_webgpu::reference::ReferenceOps>),
}

/// Delegates an `Engine` call to the engine inside.
macro_rules! each_engine {
    ($self:ident, $e:ident => $call:expr) => {
        match $self {
            AnyEngine::Gpu($e) => $call,
            AnyEngine::Cpu($e) => $call,
            AnyEngine::Reference($e) => $call,
        }
    };
}

impl Engine for AnyEngine {
    async fn start(&mut self, plan: &run::RunPlan) -> Result<()> {
        each_engine!(self, e => e.start(plan).await)
    }
    fn step(&mut self, plan: &run::RunPlan, index: usize, noise: Option<&[f32]>) -> Result<()> {
        each_engine!(self, e => e.step(plan, index, noise))
    }
    async fn sync(&mut self) -> Result<()> {
        each_engine!(self, e => e.sync().await)
    }
    async fn read(&mut self, view: View) -> Result<Tensor> {
        each_engine!(self, e => e.read(view).await)
    }
    fn write_x(&mut self, x: &[f32]) -> Result<()> {
        each_engine!(self, e => e.write_x(x))
    }
    async fn first_non_finite_step(&mut self) -> Result<Option<usize>> {
        each_engine!(self, e => e.first_non_finite_step().await)
    }
}

/// The engine of `args`, and the device-loss test hook's device for the GPU engine
/// (`DDIM_TEST_LOSE_DEVICE_AT_STEP=N` loses it after step N, 0-based, as a driver reset would).
pub fn make_engine(args: &CommonArgs, model: &Model) -> Result<(AnyEngine, Option<(wgpu::Device, usize)>)> {
    Ok(match args.engine() {
        EngineArg::Reference => {
            eprintln!("engine: CPU reference");
            (AnyEngine::Reference(CpuEngine::reference(model)), None)
        }
        EngineArg::Cpu => {
            let cpu = CpuEngine::new(model);
            eprintln!("engine: fast CPU ({})", cpu.ops().kernel_name());
            (AnyEngine::Cpu(cpu), None)
        }
        EngineArg::Gpu => {
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
