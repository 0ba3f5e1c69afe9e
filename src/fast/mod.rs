//! The fast CPU engine's ops: weights packed once at load for a register-tiled SIMD GEMM (`gemm`),
//! convolutions as that GEMM with fused epilogues (`conv`), group norm + SiLU in two passes
//! (`norm`). The other ops are cheap at these sizes and reuse the plain reference (`cpu::ops`),
//! which stays the oracle every fast op is tested against (tests/op_cases).

pub mod conv;
pub mod gemm;
pub mod norm;

use std::collections::HashMap;
use std::sync::Arc;

use crate::cpu::{ops, HostOps};
use crate::error::{Error, Result};
use crate::model::{ConvSpec, Model, UNetOps};
use crate::tensor::Tensor;
use conv::ConvWeights;
use gemm::Kernel;

/// `UNetOps` on host tensors with packed conv weights. Tensors are shared, never mutated in place.
pub struct FastOps {
    weights: HashMap<String, Arc<Tensor>>,
    /// Packed conv weights, by the address of their `Arc<Tensor>` (the handle `weight` returns).
    packed: HashMap<usize, ConvWeights>,
    kernel: Kernel,
}

impl FastOps {
    pub fn new(model: &Model) -> Self {
        Self::from_tensors(&model.weights.tensors)
    }

    pub fn from_tensors(tensors: &HashMap<String, Tensor>) -> Self {
        let weights: HashMap<String, Arc<Tensor>> = tensors.iter().map(|(k, v)| (k.clone(), Arc::new(v.clone()))).collect();
        let packed = weights
            .values()
            .filter(|t| t.shape.len() == 4 && t.shape[2] == t.shape[3])
            .filter_map(|t| ConvWeights::pack(t).ok().map(|p| (Arc::as_ptr(t) as usize, p)))
            .collect();
        FastOps { weights, packed, kernel: Kernel::detect() }
    }

    /// The GEMM microkernel in use (reported by benchmarks and the page).
    pub fn kernel_name(&self) -> &'static str {
        self.kernel.name()
    }
}

impl HostOps for FastOps {}

impl UNetOps for FastOps {
    type T = Arc<Tensor>;

    fn weight(&self, name: &str) -> Result<Self::T> {
        self.weights.get(name).cloned().ok_or_else(|| Error::MissingTensor(name.into()))
    }

    fn dims(&self, t: &Self::T) -> [usize; 4] {
        crate::cpu::dims(t)
    }

    fn conv2d(
        &mut self,
        x: &Self::T,
        w: &Self::T,
        b: &Self::T,
        spec: ConvSpec,
        chan_add: Option<&Self::T>,
        residual: Option<&Self::T>,
        out_scale: f32,
    ) -> Result<Self::T> {
        let packed;
        let cw = match self.packed.get(&(Arc::as_ptr(w) as usize)) {
            Some(cw) => cw,
            None => {
                packed = ConvWeights::pack(w)?;
                &packed
            }
        };
        let out = conv::conv2d(self.kernel, x, cw, &b.data, spec, chan_add.map(|t| &**t), residual.map(|t| &**t), out_scale)?;
        Ok(Arc::new(out))
    }

    fn group_norm(&mut self, x: &Self::T, gamma: &Self::T, beta: &Self::T, groups: usize, eps: f32, silu: bool) -> Result<Self::T> {
        Ok(Arc::new(norm::group_norm(x, gamma, beta, groups, eps, silu)?))
    }

    fn linear(&mut self, x: &Self::T, w: &Self::T, b: &Self::T, silu_in: bool, silu_out: bool) -> Result<Self::T> {
        Ok(Arc::new(ops::linear(x, w, b, silu_in, silu_out)?))
    }

    fn timestep_embedding(&mut self, t: &Self::T, dim: usize, flip: bool, shift: f32) -> Result<Self::T> {
        Ok(Arc::new(ops::timestep_embedding(t, dim, flip, shift)))
    }

    fn class_embedding_add(&mut self, emb: &Self::T, table: &Self::T, labels: &Self::T) -> Result<Self::T> {
        Ok(Arc::new(ops::class_embedding_add(emb, table, labels)?))
    }

    fn affine(&mut self, x: &Self::T, scale: f32, shift: f32) -> Result<Self::T> {
        Ok(Arc::new(ops::affine(x, scale, shift)))
    }

    fn concat_channels(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T> {
        Ok(Arc::new(ops::concat_channels(a, b)?))
    }

    fn attention(&mut self, q: &Self::T, k: &Self::T, v: &Self::T, heads: usize, dim_head: usize) -> Result<Self::T> {
        Ok(Arc::new(ops::attention(q, k, v, heads, dim_head)?))
    }
}
