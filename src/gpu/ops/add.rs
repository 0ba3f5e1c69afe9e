//! a + b, elementwise (`shaders/add.wgsl`).

use super::{dim32, groups_1d};
use crate::error::{Error, Result};
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;

kernel_params!(AddParams for "add" { count: u32, _p0: u32, _p1: u32, _p2: u32 });

pub fn add(r: &mut GpuRecorder, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
    if a.shape != b.shape {
        return Err(Error::Input(format!("add: shapes {:?} and {:?} differ", a.shape, b.shape)));
    }
    let out = r.alloc(a.shape.clone(), "sum")?;
    let params = AddParams { count: dim32(a.len()), ..Default::default() };
    r.record("add.main", &[(0, a.buffer()), (1, b.buffer()), (2, out.buffer())], &params, 3, groups_1d(a.len(), 64));
    Ok(out)
}
