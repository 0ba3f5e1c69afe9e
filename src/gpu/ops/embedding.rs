//! `nn.Embedding` (`shaders/embedding.wgsl`): a learned time embedding's row per timestep.

use super::{dim32, groups_1d};
use crate::error::Result;
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;

kernel_params!(EmbeddingParams for "embedding" { n: u32, d: u32, rows: u32, _p: u32 });

pub fn embedding(r: &mut GpuRecorder, table: &GpuTensor, index: &GpuTensor) -> Result<GpuTensor> {
    let (rows, d, n) = (table.shape[0], table.shape[1], index.len());
    let out = r.alloc(vec![n, d], "embedding")?;
    let params = EmbeddingParams { n: dim32(n), d: dim32(d), rows: dim32(rows), _p: 0 };
    r.record("embedding.main", &[(0, table.buffer()), (1, index.buffer()), (2, out.buffer())], &params, 3, groups_1d(n * d, 64));
    Ok(out)
}
