//! diffusers' `upfirdn2d_native` (`shaders/upfirdn2d.wgsl`): the resnets' avg-pool / nearest /
//! FIR resampling and the Skip blocks' image path.

use super::{dim32, groups_1d};
use crate::error::{Error, Result};
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;

kernel_params!(Upfirdn2dParams for "upfirdn2d" {
    planes: u32, h: u32, w: u32, oh: u32,
    ow: u32, up: u32, down: u32, pad0: u32,
    taps: u32, _p0: u32, _p1: u32, _p2: u32,
    k: [f32; 4],
});

pub fn upfirdn2d(r: &mut GpuRecorder, x: &GpuTensor, k: &[f32], up: usize, down: usize, pad: [usize; 2]) -> Result<GpuTensor> {
    let [n, c, h, w] = x.dims();
    let taps = k.len();
    let (uh, uw) = (h * up + pad[0] + pad[1], w * up + pad[0] + pad[1]);
    if !(1..=4).contains(&taps) || up == 0 || down == 0 || uh < taps || uw < taps {
        return Err(Error::Input(format!("upfirdn2d: kernel of {taps} taps (1 to 4), up {up}, down {down}, pad {pad:?} on {h}x{w}")));
    }
    let (oh, ow) = ((uh - taps) / down + 1, (uw - taps) / down + 1);
    let out = r.alloc(vec![n, c, oh, ow], "upfirdn2d output")?;
    let mut kv = [0.0f32; 4];
    kv[..taps].copy_from_slice(k);
    let params = Upfirdn2dParams {
        planes: dim32(n * c),
        h: dim32(h),
        w: dim32(w),
        oh: dim32(oh),
        ow: dim32(ow),
        up: dim32(up),
        down: dim32(down),
        pad0: dim32(pad[0]),
        taps: dim32(taps),
        k: kv,
        ..Default::default()
    };
    r.record("upfirdn2d.main", &[(0, x.buffer()), (1, out.buffer())], &params, 2, groups_1d(out.len(), 64));
    Ok(out)
}
