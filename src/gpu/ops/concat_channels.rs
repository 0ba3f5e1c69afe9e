//! torch.cat([a, b], dim=1) (`shaders/concat_channels.wgsl`).

use super::{dim32, groups_1d};
use crate::error::{Error, Result};
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;

kernel_params!(ConcatParams for "concat_channels" { n: u32, ca: u32, cb: u32, hw: u32 });

pub fn concat_channels(r: &mut GpuRecorder, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
    let [n, ca, h, w] = a.dims();
    let [nb, cb, hb, wb] = b.dims();
    if (n, h, w) != (nb, hb, wb) {
        return Err(Error::Input(format!("concat: {:?} and {:?} differ outside the channel axis", a.shape, b.shape)));
    }
    let out = r.alloc(vec![n, ca + cb, h, w], "concat output")?;
    let params = ConcatParams { n: dim32(n), ca: dim32(ca), cb: dim32(cb), hw: dim32(h * w) };
    r.record("concat_channels.main", &[(0, a.buffer()), (1, b.buffer()), (2, out.buffer())], &params, 3, groups_1d(out.len(), 64));
    Ok(out)
}
