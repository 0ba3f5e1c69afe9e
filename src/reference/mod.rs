//! The reference engine: every op in plain Rust (`ops`), and a `UNetOps` that runs the U-Net with
//! them. It is the oracle of the other engines' tests and an engine of its own (`--engine
//! reference`, the page's `engine=reference`), never the fast one (`fast`, `--engine cpu`).
//! Also here: `HostOps`, the host-tensor ops both CPU engines implement.

pub mod grad;
pub mod ops;
pub mod profile;

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::{ConvArgs, Model, UNetConfig, UNetOps};
use crate::tensor::Tensor;

/// The `UNetOps` methods that run the plain reference ops on host tensors: embeddings, affine,
/// concat, resampling, activations and the small elementwise ops (shared by `ReferenceOps` and `fast::FastOps`, where they are cheap).
macro_rules! reference_ops {
    () => {
        fn timestep_embedding(&mut self, t: &Self::T, dim: usize, flip: bool, shift: f32) -> Result<Self::T> {
            Ok(std::sync::Arc::new($crate::reference::ops::timestep_embedding(t, dim, flip, shift)))
        }

        fn class_embedding_add(&mut self, emb: &Self::T, table: &Self::T, labels: &Self::T) -> Result<Self::T> {
            Ok(std::sync::Arc::new($crate::reference::ops::class_embedding_add(emb, table, labels)?))
        }

        fn affine(&mut self, x: &Self::T, scale: f32, shift: f32) -> Result<Self::T> {
            Ok(std::sync::Arc::new($crate::reference::ops::affine(x, scale, shift)))
        }

        fn concat_channels(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T> {
            Ok(std::sync::Arc::new($crate::reference::ops::concat_channels(a, b)?))
        }

        fn upfirdn2d(&mut self, x: &Self::T, k: &[f32], up: usize, down: usize, pad: [usize; 2]) -> Result<Self::T> {
            Ok(std::sync::Arc::new($crate::reference::ops::upfirdn2d(x, k, up, down, pad)?))
        }

        fn activation(&mut self, x: &Self::T, act: $crate::model::config::Activation, film: Option<&Self::T>) -> Result<Self::T> {
            Ok(std::sync::Arc::new($crate::reference::ops::activation(x, act, film.map(|f| &**f))?))
        }

        fn fourier_embedding(&mut self, t: &Self::T, w: &Self::T) -> Result<Self::T> {
            Ok(std::sync::Arc::new($crate::reference::ops::fourier_embedding(t, w)))
        }

        fn embedding(&mut self, table: &Self::T, index: &Self::T) -> Result<Self::T> {
            Ok(std::sync::Arc::new($crate::reference::ops::embedding(table, index)?))
        }

        fn add(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T> {
            Ok(std::sync::Arc::new($crate::reference::ops::add(a, b)?))
        }

        fn divide_by_timestep(&mut self, x: &Self::T, t: &Self::T) -> Result<Self::T> {
            Ok(std::sync::Arc::new($crate::reference::ops::divide_by_timestep(x, t)?))
        }
    };
}

/// `ClassifierOps` on host tensors with the reference kernels (`grad`), for `ReferenceOps` and
/// `fast::FastOps` (the classifier's pooling and backward ops are small next to its convs).
macro_rules! reference_classifier_ops {
    ($ty:ty) => {
        impl $crate::classifier::ClassifierOps for $ty {
            fn avg_pool2d(&mut self, x: &Self::T, k: [usize; 2]) -> Result<Self::T> {
                Ok(std::sync::Arc::new($crate::reference::grad::avg_pool2d(x, k)?))
            }

            fn avg_pool2d_backward(&mut self, g: &Self::T, k: [usize; 2], shape: [usize; 4]) -> Result<Self::T> {
                Ok(std::sync::Arc::new($crate::reference::grad::avg_pool2d_backward(g, k, shape)?))
            }

            fn group_norm_silu_backward(
                &mut self,
                g: &Self::T,
                z: &Self::T,
                gamma: &Self::T,
                beta: &Self::T,
                groups: usize,
                eps: f32,
            ) -> Result<Self::T> {
                Ok(std::sync::Arc::new($crate::reference::grad::group_norm_silu_backward(g, z, gamma, beta, groups, eps)?))
            }

            fn log_softmax_backward(&mut self, logits: &Self::T, target: &Self::T) -> Result<Self::T> {
                Ok(std::sync::Arc::new($crate::reference::grad::log_softmax_backward(logits, target)?))
            }
        }
    };
}
pub(crate) use reference_classifier_ops;
pub(crate) use reference_ops;

/// Ops that run immediately on host tensors (the reference `ReferenceOps` and `fast::FastOps`): what the
/// CPU engine and `forward_with` run on.
pub trait HostOps: UNetOps<T = Arc<Tensor>> + Sized {
    /// The ops a classifier runs on beside this engine (classifier guidance): the same kind.
    type Classifier: crate::classifier::ClassifierOps<T = Arc<Tensor>>;
    fn classifier_ops(tensors: &HashMap<String, Tensor>) -> Self::Classifier;

    /// One U-Net forward over the whole batch (inputs already checked). The fast ops split the
    /// batch across threads natively; the reference runs it as one.
    fn forward_batch(&mut self, config: &UNetConfig, sample: &Tensor, timesteps: &[f32], labels: Option<&[u32]>) -> Result<Tensor> {
        forward_in_place(self, config, sample, timesteps, labels)
    }
}

impl HostOps for ReferenceOps {
    type Classifier = ReferenceOps;
    fn classifier_ops(tensors: &HashMap<String, Tensor>) -> ReferenceOps {
        ReferenceOps::from_tensors(tensors)
    }
}

/// [n, c, h, w] of a host tensor (2-D tensors report [n, f, 1, 1]).
pub fn dims(t: &Tensor) -> [usize; 4] {
    let mut d = [1usize; 4];
    for (i, s) in t.shape.iter().take(4).enumerate() {
        d[i] = *s;
    }
    d
}

/// Runs ops immediately on host tensors. Tensors are shared, never mutated in place.
pub struct ReferenceOps {
    weights: HashMap<String, Arc<Tensor>>,
}

impl ReferenceOps {
    pub fn new(model: &Model) -> Self {
        let weights = model.weights.tensors.iter().map(|(k, v)| (k.clone(), Arc::new(v.clone()))).collect();
        ReferenceOps { weights }
    }

    /// A backend over arbitrary named tensors (single blocks in tests).
    pub fn from_tensors(tensors: &HashMap<String, Tensor>) -> Self {
        ReferenceOps { weights: tensors.iter().map(|(k, v)| (k.clone(), Arc::new(v.clone()))).collect() }
    }
}

impl UNetOps for ReferenceOps {
    type T = Arc<Tensor>;

    fn weight(&self, name: &str) -> Result<Self::T> {
        self.weights.get(name).cloned().ok_or_else(|| Error::MissingTensor(name.into()))
    }

    fn dims(&self, t: &Self::T) -> [usize; 4] {
        dims(t)
    }

    fn conv2d(&mut self, x: &Self::T, conv: ConvArgs<'_, Self::T>) -> Result<Self::T> {
        Ok(Arc::new(ops::conv2d(x, conv.map(|t| &**t))?))
    }

    fn group_norm(&mut self, x: &Self::T, gamma: &Self::T, beta: &Self::T, groups: usize, eps: f32, silu: bool) -> Result<Self::T> {
        Ok(Arc::new(ops::group_norm(x, gamma, beta, groups, eps, silu)?))
    }

    fn linear(&mut self, x: &Self::T, w: &Self::T, b: &Self::T, silu_in: bool, silu_out: bool) -> Result<Self::T> {
        Ok(Arc::new(ops::linear(x, w, b, silu_in, silu_out)?))
    }

    reference_ops!();

    fn attention(&mut self, q: &Self::T, k: &Self::T, v: &Self::T, heads: usize, dim_head: usize) -> Result<Self::T> {
        Ok(Arc::new(ops::attention(q, k, v, heads, dim_head)?))
    }
}

reference_classifier_ops!(ReferenceOps);

/// One U-Net forward on the CPU: `sample` [N,C,H,W], `timesteps` [N], `class_labels` [N].
pub fn forward(model: &Model, sample: &Tensor, timesteps: &[f32], class_labels: Option<&[u32]>) -> Result<Tensor> {
    let mut ops = ReferenceOps::new(model);
    forward_with(&mut ops, &model.config, sample, timesteps, class_labels)
}

/// Same as `forward` with ops that already hold the weights (no copy per call).
pub fn forward_with<O: HostOps>(
    ops: &mut O,
    config: &UNetConfig,
    sample: &Tensor,
    timesteps: &[f32],
    class_labels: Option<&[u32]>,
) -> Result<Tensor> {
    crate::model::unet::check_sample(config, &sample.shape, timesteps, class_labels)?;
    ops.forward_batch(config, sample, timesteps, class_labels)
}

/// The forward of a checked batch on this thread.
pub fn forward_in_place<O: HostOps>(
    ops: &mut O,
    config: &UNetConfig,
    sample: &Tensor,
    timesteps: &[f32],
    class_labels: Option<&[u32]>,
) -> Result<Tensor> {
    let n = sample.shape[0];
    let t = Arc::new(Tensor::new(vec![n], timesteps.to_vec())?);
    let labels = class_labels.map(|l| Arc::new(Tensor { shape: vec![n], data: l.iter().map(|&v| v as f32).collect() }));
    let x = Arc::new(sample.clone());
    let out = crate::model::unet_forward(ops, config, &x, &t, labels.as_ref())?;
    Ok(Arc::try_unwrap(out).unwrap_or_else(|a| (*a).clone()))
}
