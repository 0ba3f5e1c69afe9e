//! The model's weights on the GPU, uploaded once: conv kernels packed for conv2d's GEMMs (f32 or
//! f16), and, where the adapter runs Winograd convs and they fit, 3×3 kernels' transforms.

use std::collections::HashMap;

use super::pool::GpuTensor;
use super::GpuDevice;
use crate::error::Result;
use crate::model::Model;

/// The model's weights, uploaded once.
pub struct GpuWeights {
    pub tensors: HashMap<String, GpuTensor>,
    pub bytes: u64,
    /// Conv weights stored as f16 (`GpuDevice::f16_weights` at upload).
    pub f16: bool,
}

impl GpuWeights {
    pub fn upload(gpu: &GpuDevice, model: &Model) -> Result<Self> {
        Self::upload_tensors(gpu, &model.weights.tensors)
    }

    pub fn upload_tensors(gpu: &GpuDevice, named: &HashMap<String, crate::Tensor>) -> Result<Self> {
        // Every tensor is checked against the limits before the first buffer is made.
        let mut sorted: Vec<_> = named.iter().collect();
        sorted.sort_by_key(|(name, _)| name.as_str());
        let f16 = gpu.f16_weights;
        for (name, t) in &sorted {
            let bytes = if t.shape.len() == 4 { packed_conv_len(&t.shape) * if f16 { 2 } else { 4 } } else { t.data.len() * 4 };
            gpu.check_buffer_bytes(bytes as u64, &format!("weight `{name}`"))?;
        }
        // Where the adapter runs Winograd convs and all 3×3 weights' transforms fit the budget,
        // they are made once here instead of in scratch at every forward.
        let is_3x3 = |t: &crate::Tensor| t.shape.len() == 4 && t.shape[2] == 3 && t.shape[3] == 3;
        let winograd_bytes: u64 = sorted.iter().filter(|(_, t)| is_3x3(t)).map(|(_, t)| 4 * winograd_len(&t.shape) as u64).sum();
        let keep_winograd = gpu.winograd_convs() && !f16 && winograd_bytes <= gpu.conv.winograd_resident_bytes;
        let mut tensors = HashMap::new();
        let mut bytes = 0;
        for (name, t) in sorted {
            // 4-D weights are conv kernels, and conv2d reads them packed.
            let buf = match (t.shape.len() == 4, f16) {
                (true, false) => gpu.upload(&pack_conv_weight(t), name)?,
                (true, true) => gpu.upload_f16(&pack_conv_weight(t), name)?,
                (false, _) => gpu.upload(&t.data, name)?,
            };
            bytes += buf.size();
            let mut tensor = GpuTensor::owned(buf, t.shape.clone());
            if keep_winograd && is_3x3(t) {
                let u = gpu.upload(&pack_winograd_weight(t), name)?;
                bytes += u.size();
                tensor.winograd = Some(u);
            }
            tensors.insert(name.clone(), tensor);
        }
        Ok(GpuWeights { tensors, bytes, f16 })
    }
}

/// A conv weight [O, I, K, K] as conv2d_gemm.wgsl reads it: [O/8][I][K][K][8], output channels
/// innermost in blocks of 8 (zero-padded), so one (i, ky, kx) is two vec4 loads.
pub fn pack_conv_weight(t: &crate::Tensor) -> Vec<f32> {
    let rest = t.shape[1..].iter().product::<usize>();
    let mut packed = vec![0.0; packed_conv_len(&t.shape)];
    if rest == 0 {
        return packed;
    }
    for (oc, row) in t.data.chunks_exact(rest).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            packed[((oc / 8) * rest + j) * 8 + oc % 8] = v;
        }
    }
    packed
}

/// A 3×3 conv weight [O, I, 3, 3] as Winograd F(2×2, 3×3) multiplies it: U = G g Gᵀ per (o, i),
/// G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1], as [16][O/8][I][8] (conv2d_winograd.wgsl's `winograd_weights`
/// makes the same in scratch where it is not kept).
pub fn pack_winograd_weight(t: &crate::Tensor) -> Vec<f32> {
    let (co, ci) = (t.shape[0], t.shape[1]);
    let step = co.next_multiple_of(8) * ci;
    let mut u = vec![0.0; winograd_len(&t.shape)];
    for (oi, k) in t.data.chunks_exact(9).enumerate() {
        let (o, i) = (oi / ci, oi % ci);
        let at = ((o / 8) * ci + i) * 8 + o % 8;
        for (pos, v) in crate::fast::winograd::transform_weight(k).into_iter().enumerate() {
            u[at + pos * step] = v;
        }
    }
    u
}

/// Floats in a Winograd-transformed 3×3 weight: 16 per (o, i), output channels in blocks of 8.
fn winograd_len(shape: &[usize]) -> usize {
    16 * shape[0].next_multiple_of(8) * shape[1]
}

/// Floats in a packed conv weight: output channels rounded up to a block of 8.
fn packed_conv_len(shape: &[usize]) -> usize {
    shape[0].next_multiple_of(8) * shape[1..].iter().product::<usize>()
}
