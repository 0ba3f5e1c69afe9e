//! Host ops that time every call by op kind: `ddim bench` prints where a forward's time goes.

use crate::model::ConvArgs;
use crate::{Result, Tensor};

/// Milliseconds from a monotonic clock (performance.now() in the browser).
pub fn now_ms() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1e3
    }
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Reflect::get(&js_sys::global(), &"performance".into())
            .ok()
            .and_then(|p| js_sys::Reflect::get(&p, &"now".into()).ok().map(|f| (p, f)))
            .and_then(|(p, f)| js_sys::Function::from(f).call0(&p).ok())
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
    }
}

/// Host ops that time every call by op kind.
pub struct Profiled<O> {
    pub ops: O,
    /// FLOPs of the convolutions run so far.
    pub conv_flops: f64,
    /// Milliseconds spent per op kind.
    pub ms: std::collections::BTreeMap<&'static str, f64>,
    /// The two largest conv outputs seen, in values (the activations that bound memory).
    pub largest: [usize; 2],
}

impl<O> Profiled<O> {
    pub fn new(ops: O) -> Self {
        Profiled { ops, conv_flops: 0.0, ms: Default::default(), largest: [0; 2] }
    }
}

impl<O: crate::reference::HostOps> Profiled<O> {
    fn time<T>(&mut self, op: &'static str, f: impl FnOnce(&mut O) -> T) -> T {
        let start = now_ms();
        let out = f(&mut self.ops);
        *self.ms.entry(op).or_default() += now_ms() - start;
        out
    }
}

impl<O: crate::reference::HostOps> Profiled<O> {
    /// Notes a conv's output size and FLOPs.
    fn counted(&mut self, w: &Tensor, out: std::sync::Arc<Tensor>) -> std::sync::Arc<Tensor> {
        if out.len() > self.largest[1] {
            self.largest[1] = out.len();
            self.largest.sort_unstable_by(|a, b| b.cmp(a));
        }
        let w_len: usize = w.shape.iter().product(); // the fast engine keeps conv weights packed only
        self.conv_flops += 2.0 * (w_len * out.len() / w.shape[0]) as f64;
        out
    }
}

impl<O: crate::reference::HostOps> crate::reference::HostOps for Profiled<O> {
    type Classifier = O::Classifier;
    fn classifier_ops(tensors: &std::collections::HashMap<String, Tensor>) -> O::Classifier {
        O::classifier_ops(tensors)
    }
}

impl<O: crate::reference::HostOps> crate::model::UNetOps for Profiled<O> {
    type T = std::sync::Arc<Tensor>;
    fn weight(&self, name: &str) -> Result<Self::T> {
        self.ops.weight(name)
    }
    fn dims(&self, t: &Self::T) -> [usize; 4] {
        self.ops.dims(t)
    }
    fn conv2d(&mut self, x: &Self::T, conv: ConvArgs<'_, Self::T>) -> Result<Self::T> {
        let kind = if conv.weight.shape[2] == 1 { "conv 1x1" } else { "conv 3x3" };
        let out = self.time(kind, |o| o.conv2d(x, conv))?;
        Ok(self.counted(conv.weight, out))
    }
    fn norm_silu_conv2d(
        &mut self,
        x: &[Self::T],
        norm: crate::model::GroupNorm<'_, Self::T>,
        conv: ConvArgs<'_, Self::T>,
    ) -> Result<Self::T> {
        let out = self.time("group_norm+silu+conv 3x3", |o| o.norm_silu_conv2d(x, norm, conv))?;
        Ok(self.counted(conv.weight, out))
    }
    fn conv2d_parts(&mut self, x: &[Self::T], conv: ConvArgs<'_, Self::T>) -> Result<Self::T> {
        let out = self.time("conv 1x1", |o| o.conv2d_parts(x, conv))?;
        Ok(self.counted(conv.weight, out))
    }
    fn channel_parts(&mut self, a: Self::T, b: Self::T) -> Result<Vec<Self::T>> {
        self.time("concat", |o| o.channel_parts(a, b))
    }
    fn group_norm(&mut self, x: &Self::T, g: &Self::T, b: &Self::T, groups: usize, eps: f32, silu: bool) -> Result<Self::T> {
        self.time("group_norm", |o| o.group_norm(x, g, b, groups, eps, silu))
    }
    fn linear(&mut self, x: &Self::T, w: &Self::T, b: &Self::T, si: bool, so: bool) -> Result<Self::T> {
        self.time("linear", |o| o.linear(x, w, b, si, so))
    }
    fn timestep_embedding(&mut self, t: &Self::T, dim: usize, flip: bool, shift: f32) -> Result<Self::T> {
        self.time("embeddings", |o| o.timestep_embedding(t, dim, flip, shift))
    }
    fn class_embedding_add(&mut self, e: &Self::T, t: &Self::T, l: &Self::T) -> Result<Self::T> {
        self.time("embeddings", |o| o.class_embedding_add(e, t, l))
    }
    fn affine(&mut self, x: &Self::T, s: f32, b: f32) -> Result<Self::T> {
        self.time("affine", |o| o.affine(x, s, b))
    }
    fn concat_channels(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T> {
        self.time("concat", |o| o.concat_channels(a, b))
    }
    fn attention(&mut self, q: &Self::T, k: &Self::T, v: &Self::T, h: usize, d: usize) -> Result<Self::T> {
        self.time("attention", |o| o.attention(q, k, v, h, d))
    }
    fn upfirdn2d(&mut self, x: &Self::T, k: &[f32], up: usize, down: usize, pad: [usize; 2]) -> Result<Self::T> {
        self.time("upfirdn2d", |o| o.upfirdn2d(x, k, up, down, pad))
    }
    fn activation(&mut self, x: &Self::T, act: crate::model::config::Activation, film: Option<&Self::T>) -> Result<Self::T> {
        self.time("activation", |o| o.activation(x, act, film))
    }
    fn fourier_embedding(&mut self, t: &Self::T, w: &Self::T) -> Result<Self::T> {
        self.time("embeddings", |o| o.fourier_embedding(t, w))
    }
    fn embedding(&mut self, table: &Self::T, index: &Self::T) -> Result<Self::T> {
        self.time("embeddings", |o| o.embedding(table, index))
    }
    fn add(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T> {
        self.time("add", |o| o.add(a, b))
    }
    fn divide_by_timestep(&mut self, x: &Self::T, t: &Self::T) -> Result<Self::T> {
        self.time("affine", |o| o.divide_by_timestep(x, t))
    }
}
