//! Linear (`shaders/linear.wgsl`): y = act_out(W act_in(x) + b) on [N, in] → [N, out], SiLU
//! optional on either side (the time-embedding MLP, a resnet's `time_emb_proj`).

use super::{dim32, groups_1d};
use crate::error::{Error, Result};
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;

kernel_params!(LinearParams for "linear" { n: u32, fin: u32, fout: u32, silu_in: u32, silu_out: u32, _p0: u32, _p1: u32, _p2: u32 });

pub fn linear(r: &mut GpuRecorder, x: &GpuTensor, w: &GpuTensor, b: &GpuTensor, silu_in: bool, silu_out: bool) -> Result<GpuTensor> {
    let n = x.shape[0];
    let fin = x.len() / n.max(1);
    let [fout, wfin, _, _] = w.dims();
    if wfin != fin {
        return Err(Error::Input(format!("linear: weight {:?} does not fit input {:?}", w.shape, x.shape)));
    }
    let out = r.alloc(vec![n, fout], "linear output")?;
    let params = LinearParams {
        n: dim32(n),
        fin: dim32(fin),
        fout: dim32(fout),
        silu_in: silu_in as u32,
        silu_out: silu_out as u32,
        ..Default::default()
    };
    r.record("linear.main", &[(0, x.buffer()), (1, w.buffer()), (2, b.buffer()), (3, out.buffer())], &params, 4, groups_1d(n * fout, 64));
    Ok(out)
}
