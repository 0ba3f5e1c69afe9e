//! The fast CPU engine's ops: weights packed once at load for a register-tiled SIMD GEMM (`gemm`),
//! convolutions as that GEMM with fused epilogues (`conv`), group norm + SiLU in two passes
//! (`norm`), attention with contiguous inner loops (`attention`), linear as lane-wise dot products
//! (`linear`). The other ops are cheap at these sizes and reuse the plain reference (`reference::ops`),
//! which stays the oracle every fast op is tested against (tests/op_cases).

pub mod attention;
mod bands;
pub mod conv;
mod epilogue;
pub mod fork;
pub mod gemm;
pub mod linear;
pub mod norm;
pub mod winograd;

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::{ConvArgs, GroupNorm, Model, UNetConfig, UNetOps};
use crate::reference::{forward_in_place, HostOps};
use crate::tensor::Tensor;
use conv::{ConvWeights, PreNorm};
use gemm::Kernel;

/// `UNetOps` on host tensors with packed conv weights. Tensors are shared, never mutated in place;
/// cloning shares the weights (each thread of a batch split holds a clone).
#[derive(Clone)]
pub struct FastOps {
    weights: Arc<HashMap<String, Arc<Tensor>>>,
    /// Packed conv weights, by the address of their `Arc<Tensor>` (the handle `weight` returns).
    packed: Arc<HashMap<usize, ConvWeights>>,
    kernel: Kernel,
    threads: usize,
    /// How one op may split across threads (`fork`): all of them for a forward on one thread,
    /// the rest per share where the batch is split.
    split: fork::Split,
    /// Bytes of padded input a conv reads per band of output rows (`conv::BAND_BYTES`).
    band_bytes: usize,
    /// Stride-1 3×3 convs run as Winograd F(2×2, 3×3) where their weights were transformed.
    winograd: conv::Winograd,
}

impl FastOps {
    pub fn new(model: &Model) -> Self {
        Self::from_tensors(&model.weights.tensors)
    }

    /// Takes the model's weights over, packing each conv weight as it goes and keeping only the
    /// packed copy (its handle keeps the shape, no data): the engine then holds one copy of the
    /// weights, and packing never holds two of the whole model.
    pub fn from_model(model: Model) -> Self {
        let mut weights = HashMap::new();
        let mut packed = HashMap::new();
        for (name, t) in model.weights.tensors {
            let conv = (t.shape.len() == 4 && t.shape[2] == t.shape[3]).then(|| ConvWeights::pack(&t).ok()).flatten();
            let handle = match conv {
                Some(cw) => {
                    let shape_only = Arc::new(Tensor { shape: t.shape, data: Vec::new() });
                    packed.insert(Arc::as_ptr(&shape_only) as usize, cw);
                    shape_only
                }
                None => Arc::new(t),
            };
            weights.insert(name, handle);
        }
        Self::with_weights(weights, packed)
    }

    /// The engine over these weights, with this CPU's kernel and the default threads and bands.
    fn with_weights(weights: HashMap<String, Arc<Tensor>>, packed: HashMap<usize, ConvWeights>) -> Self {
        let (weights, packed) = (Arc::new(weights), Arc::new(packed));
        let threads = default_threads();
        FastOps {
            weights,
            packed,
            kernel: Kernel::detect(),
            threads,
            split: fork::Split::new(threads),
            band_bytes: conv::BAND_BYTES,
            winograd: conv::Winograd::On,
        }
    }

    pub fn from_tensors(tensors: &HashMap<String, Tensor>) -> Self {
        let weights: HashMap<String, Arc<Tensor>> = tensors.iter().map(|(k, v)| (k.clone(), Arc::new(v.clone()))).collect();
        let packed = weights
            .iter()
            .filter(|(_, t)| t.shape.len() == 4 && t.shape[2] == t.shape[3])
            .filter_map(|(_, t)| ConvWeights::pack(t).ok().map(|p| (Arc::as_ptr(t) as usize, p)))
            .collect();
        Self::with_weights(weights, packed)
    }

    /// Threads a forward uses (natively; the browser splits the batch across workers): the batch
    /// split across them, and what is left to each share splits its ops (`fork`).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self.split.threads = self.threads;
        self
    }

    /// How one op may split across threads, whatever the batch split (tests force splits with
    /// `min_share_forks` 0; `ddim bench` compares 1 thread).
    pub fn with_split(mut self, split: fork::Split) -> Self {
        self.split = split;
        self
    }

    /// Convs pad their input in bands of at most `bytes` (tests use small bands on small shapes).
    pub fn with_band_bytes(mut self, bytes: usize) -> Self {
        self.band_bytes = bytes;
        self
    }

    /// Whether stride-1 3×3 convs may run as Winograd F(2×2, 3×3) (`winograd`); off, every conv
    /// runs directly (tests check both paths).
    pub fn with_winograd(mut self, on: bool) -> Self {
        self.winograd = if on { conv::Winograd::On } else { conv::Winograd::Off };
        self
    }

    /// Every Winograd conv makes its U per run, whatever its size (tests check that path on
    /// small shapes, where `conv::Winograd::On` keeps U).
    pub fn with_winograd_making_u(mut self) -> Self {
        self.winograd = conv::Winograd::MakingU;
        self
    }

    /// Runs this microkernel instead of the detected one (tests check every kernel the CPU has).
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// `conv::conv2d` with this engine's packed copy of `w` (packed now if it has none).
    fn conv(&self, parts: &[Arc<Tensor>], pre: Option<PreNorm>, conv: ConvArgs<'_, Arc<Tensor>>) -> Result<Arc<Tensor>> {
        let w = conv.weight;
        let packed;
        let cw = match self.packed.get(&(Arc::as_ptr(w) as usize)) {
            Some(cw) => cw,
            None => {
                packed = ConvWeights::pack(w)?;
                &packed
            }
        };
        let parts: Vec<&Tensor> = parts.iter().map(|p| &**p).collect();
        Ok(Arc::new(conv::conv2d(self.kernel, &parts, pre, cw, conv.map(|t| &**t), (self.band_bytes, self.winograd, self.split))?))
    }

    /// The GEMM microkernel in use (reported by benchmarks and the page).
    pub fn kernel_name(&self) -> &'static str {
        self.kernel.name()
    }
}

/// All cores natively (`DDIM_THREADS` overrides); in wasm this thread and the fork workers
/// (`fork::threads_here`: one in the unthreaded builds).
fn default_threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(n) = std::env::var("DDIM_THREADS").ok().and_then(|v| v.parse().ok()) {
        return n;
    }
    fork::threads_here()
}

impl HostOps for FastOps {
    type Classifier = FastOps;
    fn classifier_ops(tensors: &HashMap<String, Tensor>) -> FastOps {
        FastOps::from_tensors(tensors)
    }

    /// Splits the batch into one contiguous share per thread (guidance halves, batch items): one
    /// fork/join per forward, not per op.
    fn forward_batch(&mut self, config: &UNetConfig, sample: &Tensor, ts: &[f32], labels: Option<&[u32]>) -> Result<Tensor> {
        let n = sample.shape[0];
        let threads = self.threads.min(n);
        if threads <= 1 {
            return forward_in_place(self, config, sample, ts, labels);
        }
        let item = sample.len() / n;
        let per = n.div_ceil(threads);
        // Each share's ops split across the threads left over for it (none where shares ≥ threads).
        let split = fork::Split { threads: (self.split.threads / n.div_ceil(per)).max(1), ..self.split };
        let share = |i: usize| -> Result<Tensor> {
            let (a, b) = (i * per, ((i + 1) * per).min(n));
            let mut shape = sample.shape.clone();
            shape[0] = b - a;
            let x = Tensor::new(shape, sample.data[a * item..b * item].to_vec())?;
            forward_in_place(&mut self.clone().with_split(split), config, &x, &ts[a..b], labels.map(|l| &l[a..b]))
        };
        let outs = fork::try_map((0..n.div_ceil(per)).collect(), |_, i| share(i));
        let mut data = Vec::with_capacity(n * item);
        let mut shape = Vec::new();
        for out in outs {
            let out = out.map_err(|p| Error::Input(format!("a CPU thread panicked: {}", fork::panic_message(&*p))))??;
            shape = out.shape.clone();
            data.extend(out.data);
        }
        shape[0] = n;
        Tensor::new(shape, data)
    }
}

impl UNetOps for FastOps {
    type T = Arc<Tensor>;

    fn weight(&self, name: &str) -> Result<Self::T> {
        self.weights.get(name).cloned().ok_or_else(|| Error::MissingTensor(name.into()))
    }

    fn dims(&self, t: &Self::T) -> [usize; 4] {
        crate::reference::dims(t)
    }

    fn conv2d(&mut self, x: &Self::T, conv: ConvArgs<'_, Self::T>) -> Result<Self::T> {
        self.conv(std::slice::from_ref(x), None, conv)
    }

    fn norm_silu_conv2d(&mut self, parts: &[Self::T], norm: GroupNorm<'_, Self::T>, conv: ConvArgs<'_, Self::T>) -> Result<Self::T> {
        let pre = PreNorm { gamma: &norm.gamma.data, beta: &norm.beta.data, groups: norm.groups, eps: norm.eps };
        self.conv(parts, Some(pre), conv)
    }

    fn conv2d_parts(&mut self, parts: &[Self::T], conv: ConvArgs<'_, Self::T>) -> Result<Self::T> {
        self.conv(parts, None, conv)
    }

    /// The convs read both parts in place: the concatenation is never stored.
    fn channel_parts(&mut self, a: Self::T, b: Self::T) -> Result<Vec<Self::T>> {
        Ok(vec![a, b])
    }

    fn group_norm(&mut self, x: &Self::T, gamma: &Self::T, beta: &Self::T, groups: usize, eps: f32, silu: bool) -> Result<Self::T> {
        Ok(Arc::new(norm::group_norm(x, gamma, beta, groups, eps, silu)?))
    }

    fn attention(&mut self, q: &Self::T, k: &Self::T, v: &Self::T, heads: usize, dim_head: usize) -> Result<Self::T> {
        Ok(Arc::new(attention::attention(self.kernel, q, k, v, heads, dim_head, self.split)?))
    }

    fn linear(&mut self, x: &Self::T, w: &Self::T, b: &Self::T, silu_in: bool, silu_out: bool) -> Result<Self::T> {
        Ok(Arc::new(linear::linear(x, w, b, silu_in, silu_out)?))
    }

    crate::reference::reference_ops!();
}

crate::reference::reference_classifier_ops!(FastOps);
