//! The class embedding (`shaders/class_embedding.wgsl`): emb + table[label] per item.

use super::dim32;
use crate::error::Result;
use crate::gpu::pool::GpuTensor;
use crate::gpu::recorder::GpuRecorder;
use crate::kernel_params;

kernel_params!(ClassEmbeddingParams for "class_embedding" { n: u32, d: u32, classes: u32, _p: u32 });

pub fn class_embedding_add(r: &mut GpuRecorder, emb: &GpuTensor, table: &GpuTensor, labels: &GpuTensor) -> Result<GpuTensor> {
    let (n, d) = (emb.shape[0], emb.shape[1]);
    let out = r.alloc(emb.shape.clone(), "class embedding")?;
    let params = ClassEmbeddingParams { n: dim32(n), d: dim32(d), classes: dim32(table.shape[0]), _p: 0 };
    r.record(
        "class_embedding.main",
        &[(0, emb.buffer()), (1, table.buffer()), (2, labels.buffer()), (3, out.buffer())],
        &params,
        4,
        [dim32((n * d).div_ceil(64).max(1)), 1, 1],
    );
    Ok(out)
}
