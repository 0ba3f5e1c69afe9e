//! The resnets' `act_fn` (`shaders/activation.wgsl`), with AdaGN's scale and shift when given.

use super::{dim32, groups_1d};
use crate::error::{Error, Result};
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;
use crate::model::config::Activation;

kernel_params!(ActivationParams for "activation" { count: u32, c: u32, hw: u32, act: u32 });

pub fn activation(r: &mut GpuRecorder, x: &GpuTensor, act: Activation, film: Option<&GpuTensor>) -> Result<GpuTensor> {
    let [n, c, h, w] = x.dims();
    let out = r.alloc(x.shape.clone(), "activation output")?;
    let params = ActivationParams { count: dim32(x.len()), c: dim32(c), hw: dim32(h * w), act: act.code() };
    match film {
        None => r.record("activation.main", &[(0, x.buffer()), (1, out.buffer())], &params, 2, groups_1d(x.len(), 64)),
        Some(f) if f.len() == n * 2 * c => {
            r.record("activation.film", &[(0, x.buffer()), (1, out.buffer()), (3, f.buffer())], &params, 2, groups_1d(x.len(), 64))
        }
        Some(f) => return Err(Error::Input(format!("activation: scale-shift {:?} does not fit [{n}, 2·{c}]", f.shape))),
    }
    Ok(out)
}
