//! The U-Net's ops on the GPU, one file per shader (`shaders/<op>.wgsl` ↔ `ops/<op>.rs`): each
//! holds its kernel's `Params` struct and records its dispatches on a `GpuRecorder`. Here: the
//! recorder's `UNetOps`, which the one U-Net forward (`model::unet_forward`) is written over.

pub mod activation;
pub mod add;
pub mod affine;
pub mod attention;
pub mod avg_pool2d;
pub mod class_embedding;
pub mod concat_channels;
pub mod conv2d;
pub mod divide_by_timestep;
pub mod embedding;
pub mod group_norm;
pub mod group_norm_backward;
pub mod linear;
pub mod log_softmax_backward;
pub mod matmul;
pub mod scheduler_step;
pub mod timestep_embedding;
pub mod upfirdn2d;

use super::params::{layout, ParamLayout};
use super::pool::GpuTensor;
use super::recorder::GpuRecorder;
use crate::error::{Error, Result};
use crate::model::config::Activation;
use crate::model::{ConvArgs, GroupNorm, UNetOps};

/// A dimension as the u32 a kernel reads.
fn dim32(v: usize) -> u32 {
    v as u32
}

/// Workgroups of `per_group` invocations for `count` invocations, within the per-dimension limit.
fn groups_1d(count: usize, per_group: usize) -> [u32; 3] {
    super::grid(count.div_ceil(per_group) as u32)
}

/// Every parameter struct of the engine (`tests/shaders.rs` compares each with its WGSL twin).
pub fn all_layouts() -> Vec<ParamLayout> {
    vec![
        layout::<conv2d::Conv2dParams>(),
        layout::<group_norm::GroupNormParams>(),
        layout::<linear::LinearParams>(),
        layout::<timestep_embedding::TimestepEmbeddingParams>(),
        layout::<class_embedding::ClassEmbeddingParams>(),
        layout::<affine::AffineParams>(),
        layout::<concat_channels::ConcatParams>(),
        layout::<attention::AttentionParams>(),
        layout::<matmul::MatmulParams>(),
        layout::<scheduler_step::SchedulerStepParams>(),
        layout::<super::draw::DrawParams>(),
        layout::<upfirdn2d::Upfirdn2dParams>(),
        layout::<activation::ActivationParams>(),
        layout::<embedding::EmbeddingParams>(),
        layout::<add::AddParams>(),
        layout::<divide_by_timestep::DivideByTimestepParams>(),
        layout::<avg_pool2d::AvgPool2dParams>(),
        layout::<group_norm_backward::GroupNormBackwardParams>(),
        layout::<log_softmax_backward::LogSoftmaxBackwardParams>(),
    ]
}

impl UNetOps for GpuRecorder<'_> {
    type T = GpuTensor;

    fn weight(&self, name: &str) -> Result<GpuTensor> {
        self.weights.tensors.get(name).cloned().ok_or_else(|| Error::MissingTensor(name.into()))
    }

    fn dims(&self, t: &GpuTensor) -> [usize; 4] {
        t.dims()
    }

    fn conv2d(&mut self, x: &GpuTensor, conv: ConvArgs<'_, GpuTensor>) -> Result<GpuTensor> {
        conv2d::conv2d(self, x, None, conv)
    }

    /// Group statistics, then the conv with the normalisation applied as its patches are written
    /// (`conv2d.im2col_norm`): the normalised map is never stored.
    fn norm_silu_conv2d(
        &mut self,
        parts: &[GpuTensor],
        norm: GroupNorm<'_, GpuTensor>,
        conv: ConvArgs<'_, GpuTensor>,
    ) -> Result<GpuTensor> {
        let x = self.cat(parts)?;
        let moments = group_norm::group_moments(self, &x, norm.groups, norm.eps)?;
        let pre = conv2d::PreNorm { moments: &moments, gamma: norm.gamma, beta: norm.beta, groups: norm.groups };
        conv2d::conv2d(self, &x, Some(pre), conv)
    }

    fn group_norm(&mut self, x: &GpuTensor, gamma: &GpuTensor, beta: &GpuTensor, groups: usize, eps: f32, silu: bool) -> Result<GpuTensor> {
        group_norm::group_norm(self, x, gamma, beta, groups, eps, silu)
    }

    fn linear(&mut self, x: &GpuTensor, w: &GpuTensor, b: &GpuTensor, silu_in: bool, silu_out: bool) -> Result<GpuTensor> {
        linear::linear(self, x, w, b, silu_in, silu_out)
    }

    fn timestep_embedding(&mut self, t: &GpuTensor, dim: usize, flip: bool, shift: f32) -> Result<GpuTensor> {
        timestep_embedding::timestep_embedding(self, t, dim, flip, shift)
    }

    fn class_embedding_add(&mut self, emb: &GpuTensor, table: &GpuTensor, labels: &GpuTensor) -> Result<GpuTensor> {
        class_embedding::class_embedding_add(self, emb, table, labels)
    }

    fn affine(&mut self, x: &GpuTensor, scale: f32, shift: f32) -> Result<GpuTensor> {
        affine::affine(self, x, scale, shift)
    }

    fn concat_channels(&mut self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        concat_channels::concat_channels(self, a, b)
    }

    fn attention(&mut self, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, heads: usize, d: usize) -> Result<GpuTensor> {
        attention::attention(self, q, k, v, heads, d)
    }

    fn upfirdn2d(&mut self, x: &GpuTensor, k: &[f32], up: usize, down: usize, pad: [usize; 2]) -> Result<GpuTensor> {
        upfirdn2d::upfirdn2d(self, x, k, up, down, pad)
    }

    fn activation(&mut self, x: &GpuTensor, act: Activation, film: Option<&GpuTensor>) -> Result<GpuTensor> {
        activation::activation(self, x, act, film)
    }

    fn fourier_embedding(&mut self, t: &GpuTensor, w: &GpuTensor) -> Result<GpuTensor> {
        timestep_embedding::fourier_embedding(self, t, w)
    }

    fn embedding(&mut self, table: &GpuTensor, index: &GpuTensor) -> Result<GpuTensor> {
        embedding::embedding(self, table, index)
    }

    fn add(&mut self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        add::add(self, a, b)
    }

    fn divide_by_timestep(&mut self, x: &GpuTensor, t: &GpuTensor) -> Result<GpuTensor> {
        divide_by_timestep::divide_by_timestep(self, x, t)
    }
}

impl crate::classifier::ClassifierOps for GpuRecorder<'_> {
    fn avg_pool2d(&mut self, x: &GpuTensor, k: [usize; 2]) -> Result<GpuTensor> {
        avg_pool2d::avg_pool2d(self, x, k)
    }

    fn avg_pool2d_backward(&mut self, g: &GpuTensor, k: [usize; 2], shape: [usize; 4]) -> Result<GpuTensor> {
        avg_pool2d::avg_pool2d_backward(self, g, k, shape)
    }

    fn group_norm_silu_backward(
        &mut self,
        g: &GpuTensor,
        z: &GpuTensor,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        groups: usize,
        eps: f32,
    ) -> Result<GpuTensor> {
        group_norm_backward::group_norm_silu_backward(self, g, z, gamma, beta, groups, eps)
    }

    fn log_softmax_backward(&mut self, logits: &GpuTensor, target: &GpuTensor) -> Result<GpuTensor> {
        log_softmax_backward::log_softmax_backward(self, logits, target)
    }
}
