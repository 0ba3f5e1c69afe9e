//! x[n] / t[n] (`shaders/divide_by_timestep.wgsl`): a Fourier model's output over its σ.

use super::{dim32, groups_1d};
use crate::error::{Error, Result};
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;

kernel_params!(DivideByTimestepParams for "divide_by_timestep" { count: u32, per: u32, _p0: u32, _p1: u32 });

pub fn divide_by_timestep(r: &mut GpuRecorder, x: &GpuTensor, t: &GpuTensor) -> Result<GpuTensor> {
    let n = x.shape[0];
    if t.len() != n {
        return Err(Error::Input(format!("divide_by_timestep: {} timesteps for a batch of {n}", t.len())));
    }
    let out = r.alloc(x.shape.clone(), "output over sigma")?;
    let params = DivideByTimestepParams { count: dim32(x.len()), per: dim32(x.len() / n), ..Default::default() };
    r.record("divide_by_timestep.main", &[(0, x.buffer()), (1, t.buffer()), (2, out.buffer())], &params, 3, groups_1d(x.len(), 64));
    Ok(out)
}
