//! The seed of the classifier's backward (`shaders/log_softmax_backward.wgsl`):
//! scale_n·(onehot(y_n) − softmax(logits_n)), with (y_n, scale_n) read from a buffer the engine
//! writes every step.

use super::{dim32, groups_1d};
use crate::error::{Error, Result};
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;

kernel_params!(LogSoftmaxBackwardParams for "log_softmax_backward" { n: u32, k: u32, _p0: u32, _p1: u32 });

pub fn log_softmax_backward(r: &mut GpuRecorder, logits: &GpuTensor, target: &GpuTensor) -> Result<GpuTensor> {
    let n = target.len() / 2;
    if n == 0 || target.len() != 2 * n || !logits.len().is_multiple_of(n) {
        return Err(Error::Input(format!("log_softmax_backward: {} logits for {} targets", logits.len(), target.len() / 2)));
    }
    let k = logits.len() / n;
    let out = r.alloc(vec![n, k], "log_softmax gradient")?;
    let params = LogSoftmaxBackwardParams { n: dim32(n), k: dim32(k), ..Default::default() };
    r.record("log_softmax_backward.main", &[(0, logits.buffer()), (1, target.buffer()), (2, out.buffer())], &params, 3, groups_1d(n, 64));
    Ok(out)
}
