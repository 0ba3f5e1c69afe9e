//! Average pooling and its input gradient (`shaders/avg_pool2d.wgsl`): the classifier's pooling.

use super::{dim32, groups_1d};
use crate::error::{Error, Result};
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;

kernel_params!(AvgPool2dParams for "avg_pool2d" { planes: u32, h: u32, w: u32, oh: u32, ow: u32, kh: u32, kw: u32, _p: u32 });

fn params([n, c, h, w]: [usize; 4], k: [usize; 2]) -> Result<AvgPool2dParams> {
    if k[0] == 0 || k[1] == 0 || k[0] > h || k[1] > w {
        return Err(Error::Input(format!("avg_pool2d: a {}×{} window does not fit a {h}×{w} input", k[0], k[1])));
    }
    Ok(AvgPool2dParams {
        planes: dim32(n * c),
        h: dim32(h),
        w: dim32(w),
        oh: dim32(h / k[0]),
        ow: dim32(w / k[1]),
        kh: dim32(k[0]),
        kw: dim32(k[1]),
        _p: 0,
    })
}

pub fn avg_pool2d(r: &mut GpuRecorder, x: &GpuTensor, k: [usize; 2]) -> Result<GpuTensor> {
    let [n, c, h, w] = x.dims();
    let p = params([n, c, h, w], k)?;
    let out = r.alloc(vec![n, c, h / k[0], w / k[1]], "avg_pool2d output")?;
    r.record("avg_pool2d.main", &[(0, x.buffer()), (1, out.buffer())], &p, 2, groups_1d(out.len(), 64));
    Ok(out)
}

/// The input gradient of `avg_pool2d` over an input of `shape`; `g` holds N·C·⌊H/k₀⌋·⌊W/k₁⌋ values.
pub fn avg_pool2d_backward(r: &mut GpuRecorder, g: &GpuTensor, k: [usize; 2], shape: [usize; 4]) -> Result<GpuTensor> {
    let p = params(shape, k)?;
    if g.len() != (p.planes * p.oh * p.ow) as usize {
        return Err(Error::Input(format!(
            "avg_pool2d_backward: {} gradient values for a {}×{} output of {:?}",
            g.len(),
            p.oh,
            p.ow,
            shape
        )));
    }
    let out = r.alloc(shape.to_vec(), "avg_pool2d input gradient")?;
    r.record("avg_pool2d.backward", &[(0, g.buffer()), (1, out.buffer())], &p, 2, groups_1d(out.len(), 64));
    Ok(out)
}
