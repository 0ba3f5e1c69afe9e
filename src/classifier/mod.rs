//! A noise-aware classifier p(y | x_t, t) and its input gradient ∇ₓ log p(y | x_t, t): classifier
//! guidance (Dhariwal & Nichol 2021, Algorithms 1 and 2). The format (config.json + safetensors)
//! and the network are in docs/classifier.md; `weights/train_classifier.py` trains the bundled one.
//!
//! The forward and the backward are one op list (`input_gradient`) written over `ClassifierOps`,
//! recorded once on the GPU and replayed every step like the U-Net, or run by the CPU engines.
//! Backward ops: a stride-1 conv's input gradient is a conv with the kernel flipped and its
//! channels swapped (padding k − 1 − p), a linear layer's is a linear layer with Wᵀ; these derived
//! weights are made at load (`input_grad_weights`), so they run on the engines' own conv and linear
//! kernels. Pooling, silu(group_norm(·)) and log-softmax have backward kernels of their own.

use std::collections::HashMap;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::{ConvArgs, ConvSpec, UNetOps};
use crate::tensor::Tensor;

/// The class name a classifier's config.json must carry.
pub const CLASS_NAME: &str = "NoisyClassifier";

/// config.json of a classifier (every key is required; unknown keys are refused by name).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    #[serde(rename = "_class_name")]
    pub class_name: String,
    pub in_channels: usize,
    pub sample_size: usize,
    pub num_classes: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    pub norm_eps: f32,
    pub time_embedding_dim: usize,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f32,
    /// The forward process it was trained on (DDPM betas), checked against the run's scheduler.
    pub num_train_timesteps: usize,
    pub beta_schedule: String,
    pub beta_start: f32,
    pub beta_end: f32,
}

impl ClassifierConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let bad = |e: String| Error::Config(format!("classifier config: {e}"));
        let value = crate::json::parse_json(text).map_err(bad)?;
        if !value.is_object() {
            return Err(bad("not a JSON object".into()));
        }
        let cfg: ClassifierConfig = crate::json::from_value(value).map_err(bad)?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        let bad = |field: &str, value: String, why: &str| Err(Error::unsupported(&format!("classifier {field}"), value, why));
        if self.class_name != CLASS_NAME {
            return bad(
                "_class_name",
                format!("{:?}", self.class_name),
                "a classifier's config names NoisyClassifier (docs/classifier.md)",
            );
        }
        for (field, v) in
            [("in_channels", self.in_channels), ("num_classes", self.num_classes), ("layers_per_block", self.layers_per_block)]
        {
            if !(1..=4096).contains(&v) {
                return bad(field, v.to_string(), "must be from 1 to 4096");
            }
        }
        if self.num_classes < 2 {
            return bad("num_classes", self.num_classes.to_string(), "a classifier needs at least 2 classes");
        }
        if self.block_out_channels.is_empty() || self.block_out_channels.len() > 8 {
            return bad("block_out_channels", format!("{:?}", self.block_out_channels), "1 to 8 levels");
        }
        for &c in &self.block_out_channels {
            if !(1..=4096).contains(&c) || self.norm_num_groups == 0 || c % self.norm_num_groups != 0 {
                return bad(
                    "block_out_channels",
                    format!("{:?}", self.block_out_channels),
                    &format!("each from 1 to 4096 and divisible by norm_num_groups = {}", self.norm_num_groups),
                );
            }
        }
        let levels = self.block_out_channels.len() as u32;
        if self.sample_size == 0 || self.sample_size > 4096 || self.sample_size < 1 << (levels - 1) {
            return bad("sample_size", self.sample_size.to_string(), &format!("from 2^(levels − 1) = {} to 4096", 1 << (levels - 1)));
        }
        if self.time_embedding_dim == 0 || self.time_embedding_dim > 4096 || !self.block_out_channels[0].is_multiple_of(2) {
            return bad(
                "time_embedding_dim",
                self.time_embedding_dim.to_string(),
                "from 1 to 4096, with an even block_out_channels[0] (the sinusoidal embedding's width)",
            );
        }
        if !(self.norm_eps > 0.0 && self.norm_eps.is_finite()) {
            return bad("norm_eps", self.norm_eps.to_string(), "must be a positive number");
        }
        self.alphas_cumprod().map(|_| ())
    }

    /// ᾱ_t of the forward process the classifier was trained on.
    pub fn alphas_cumprod(&self) -> Result<Vec<f32>> {
        let json = serde_json::json!({
            "beta_schedule": self.beta_schedule,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "num_train_timesteps": self.num_train_timesteps,
        });
        let schedule = crate::sampler::schedule::Schedule::from_json(&json.to_string())
            .map_err(|e| Error::Config(format!("classifier config: its forward process: {e}")))?;
        Ok(schedule.alphas_cumprod)
    }

    /// (name, shape) of every tensor the file must hold.
    pub fn expected_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let ch = &self.block_out_channels;
        let d = self.time_embedding_dim;
        let mut out =
            vec![("time_embedding.linear.weight".to_string(), vec![d, ch[0]]), ("time_embedding.linear.bias".to_string(), vec![d])];
        let mut c_in = self.in_channels;
        for (level, &c) in ch.iter().enumerate() {
            for j in 0..self.layers_per_block {
                let p = format!("blocks.{level}.{j}");
                out.push((format!("{p}.conv.weight"), vec![c, c_in, 3, 3]));
                out.push((format!("{p}.conv.bias"), vec![c]));
                out.push((format!("{p}.time_proj.weight"), vec![c, d]));
                out.push((format!("{p}.time_proj.bias"), vec![c]));
                out.push((format!("{p}.norm.weight"), vec![c]));
                out.push((format!("{p}.norm.bias"), vec![c]));
                c_in = c;
            }
        }
        out.push(("out.weight".into(), vec![self.num_classes, c_in]));
        out.push(("out.bias".into(), vec![self.num_classes]));
        out
    }
}

/// A loaded classifier: its config and its weights, with the derived input-gradient weights.
#[derive(Clone, Debug)]
pub struct Classifier {
    pub config: ClassifierConfig,
    pub tensors: HashMap<String, Tensor>,
    pub stored_dtype: String,
    /// The stored tensors' parameter count (the derived ones not counted).
    pub parameters: usize,
}

impl Classifier {
    /// Parses and checks config.json and the safetensors file (`file` names it in errors).
    pub fn from_files(config_json: &str, bytes: &[u8], file: &str) -> Result<Self> {
        let config = ClassifierConfig::from_json(config_json)?;
        let (tensors, stored_dtype) = crate::model::weights::read_tensors(bytes, file, true)?;
        Self::from_tensors(config, tensors, stored_dtype)
    }

    /// Checks named tensors against the config (every one present with its shape, nothing else).
    pub fn from_tensors(config: ClassifierConfig, mut tensors: HashMap<String, Tensor>, stored_dtype: String) -> Result<Self> {
        let expected = config.expected_shapes();
        for (name, shape) in &expected {
            let t = tensors.get(name).ok_or_else(|| Error::Config(format!("classifier: missing tensor `{name}`")))?;
            if &t.shape != shape {
                return Err(Error::Config(format!("classifier: tensor `{name}` has shape {:?}, the config expects {shape:?}", t.shape)));
            }
        }
        if let Some(extra) = tensors.keys().filter(|k| !expected.iter().any(|(n, _)| n == *k)).min() {
            return Err(Error::Config(format!(
                "classifier: the weights hold tensor `{extra}`, which this config does not use: config and weights do not match"
            )));
        }
        let parameters = tensors.values().map(Tensor::len).sum();
        let derived = input_grad_weights(&config, &tensors)?;
        tensors.extend(derived);
        Ok(Classifier { config, tensors, stored_dtype, parameters })
    }

    /// Checks that the classifier fits a model and a run: its input (channels, size) and the
    /// forward process (ᾱ) it was trained on.
    pub fn check_fits(&self, in_channels: usize, hw: (usize, usize), alphas_cumprod: &[f32]) -> Result<()> {
        Self::check_config_fits(&self.config, in_channels, hw, alphas_cumprod)
    }

    /// `check_fits` from the config alone (a run plans with the config; the engine holds the weights).
    pub fn check_config_fits(cfg: &ClassifierConfig, in_channels: usize, hw: (usize, usize), alphas_cumprod: &[f32]) -> Result<()> {
        if cfg.in_channels != in_channels || (cfg.sample_size, cfg.sample_size) != hw {
            return Err(Error::Input(format!(
                "the classifier takes {}-channel {}×{} images; the run makes {in_channels}-channel {}×{}",
                cfg.in_channels, cfg.sample_size, cfg.sample_size, hw.0, hw.1
            )));
        }
        let own = cfg.alphas_cumprod()?;
        let same =
            own.len() == alphas_cumprod.len() && own.iter().zip(alphas_cumprod).all(|(a, b)| (a - b).abs() <= 1e-5 * a.max(*b).max(1e-3));
        if !same {
            return Err(Error::Input(format!(
                "the classifier was trained on {} betas {}…{} over {} steps; the run's scheduler has another forward process \
                 ({} steps): guidance would use the wrong noise levels",
                cfg.beta_schedule,
                cfg.beta_start,
                cfg.beta_end,
                cfg.num_train_timesteps,
                alphas_cumprod.len()
            )));
        }
        Ok(())
    }
}

/// A conv's input gradient as a conv: [O, I, k, k] → [I, O, k, k] flipped in both axes, with a
/// zero bias; a linear layer's: Wᵀ with a zero bias. Named `<layer>.input_grad.weight/bias`.
fn input_grad_weights(cfg: &ClassifierConfig, t: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (name, _) in cfg.expected_shapes() {
        let Some(layer) = name.strip_suffix(".weight") else { continue };
        if !(layer.ends_with(".conv") || layer == "out") {
            continue;
        }
        let w = &t[&name];
        let (weight, fan_in) = match w.shape[..] {
            [o, i, kh, kw] => {
                let mut flipped = vec![0.0; w.len()];
                for (oc, ic, y, x) in
                    (0..o).flat_map(|a| (0..i).flat_map(move |b| (0..kh).flat_map(move |y| (0..kw).map(move |x| (a, b, y, x)))))
                {
                    flipped[((ic * o + oc) * kh + (kh - 1 - y)) * kw + (kw - 1 - x)] = w.data[((oc * i + ic) * kh + y) * kw + x];
                }
                (Tensor::new(vec![i, o, kh, kw], flipped)?, i)
            }
            [o, i] => {
                let transposed = (0..i * o).map(|k| w.data[(k % o) * i + k / o]).collect();
                (Tensor::new(vec![i, o], transposed)?, i)
            }
            _ => return Err(Error::Input(format!("classifier: `{name}` is neither a conv nor a linear weight"))),
        };
        out.insert(format!("{layer}.input_grad.weight"), weight);
        out.insert(format!("{layer}.input_grad.bias"), Tensor::zeros(vec![fan_in]));
    }
    Ok(out)
}

/// The classifier's ops beyond the U-Net's (`reference::grad` has their definitions).
pub trait ClassifierOps: UNetOps {
    /// `F.avg_pool2d(x, k, stride=k)` (floor).
    fn avg_pool2d(&mut self, x: &Self::T, k: [usize; 2]) -> Result<Self::T>;
    /// The input gradient of `avg_pool2d` over an input of `shape`.
    fn avg_pool2d_backward(&mut self, g: &Self::T, k: [usize; 2], shape: [usize; 4]) -> Result<Self::T>;
    /// The input gradient of silu(group_norm(z)).
    fn group_norm_silu_backward(
        &mut self,
        g: &Self::T,
        z: &Self::T,
        gamma: &Self::T,
        beta: &Self::T,
        groups: usize,
        eps: f32,
    ) -> Result<Self::T>;
    /// scale_n·(onehot(y_n) − softmax(logits_n)), `target` [N, 2] = (y_n, scale_n).
    fn log_softmax_backward(&mut self, logits: &Self::T, target: &Self::T) -> Result<Self::T>;
}

/// The shapes `ClassifierOps::group_norm_silu_backward` takes: g as large as z [N, C, H, W], γ and
/// β of C, groups dividing C (every backend checks them the same way).
pub fn check_group_norm_backward(g: &[usize], z: &[usize], gamma: usize, beta: usize, groups: usize) -> Result<()> {
    let c = z.get(1).copied().unwrap_or(0);
    let fits = z.len() == 4 && g.iter().product::<usize>() == z.iter().product::<usize>() && gamma == c && beta == c;
    if !fits || groups == 0 || !c.is_multiple_of(groups) {
        return Err(Error::Input(format!(
            "group_norm_silu_backward: gradient {g:?}, input {z:?}, γ {gamma}, β {beta}, {groups} groups do not fit"
        )));
    }
    Ok(())
}

/// What one pass gives: the logits [N, K] and scale_n·∇ₓ log p(y_n | x_n, t_n) [N, C, H, W].
pub struct Gradient<T> {
    pub logits: T,
    pub grad: T,
}

/// The classifier's forward on `x` [N, C, H, W] at timesteps `t` [N], and the input gradient of
/// scale·log p(y | x, t) (`target` [N, 2] = (y, scale) per item) by the backward of every op in
/// reverse order.
pub fn input_gradient<O: ClassifierOps>(ops: &mut O, cfg: &ClassifierConfig, x: &O::T, t: &O::T, target: &O::T) -> Result<Gradient<O::T>> {
    let ch = &cfg.block_out_channels;
    let (groups, eps) = (cfg.norm_num_groups, cfg.norm_eps);
    let sin = ops.timestep_embedding(t, ch[0], cfg.flip_sin_to_cos, cfg.freq_shift)?;
    let temb = ops.linear(&sin, &ops.weight("time_embedding.linear.weight")?, &ops.weight("time_embedding.linear.bias")?, false, true)?;
    // Forward, keeping what the backward reads: each layer's pre-norm z, each pool's input shape.
    let mut layers = Vec::new();
    let mut pools = Vec::new();
    let mut a = x.clone();
    for (level, _) in ch.iter().enumerate() {
        for j in 0..cfg.layers_per_block {
            let p = format!("blocks.{level}.{j}");
            let bias = ops.linear(
                &temb,
                &ops.weight(&format!("{p}.time_proj.weight"))?,
                &ops.weight(&format!("{p}.time_proj.bias"))?,
                false,
                false,
            )?;
            let (w, b) = (ops.weight(&format!("{p}.conv.weight"))?, ops.weight(&format!("{p}.conv.bias"))?);
            let z = ops.conv2d(
                &a,
                ConvArgs { weight: &w, bias: &b, spec: ConvSpec::SAME3, chan_add: Some(&bias), residual: None, out_scale: 1.0 },
            )?;
            let (gamma, beta) = (ops.weight(&format!("{p}.norm.weight"))?, ops.weight(&format!("{p}.norm.bias"))?);
            a = ops.group_norm(&z, &gamma, &beta, groups, eps, true)?;
            layers.push((p, z));
        }
        let shape = ops.dims(&a);
        // Each level halves the image; the last one averages it away (a global mean).
        let k = if level + 1 == ch.len() { [shape[2], shape[3]] } else { [2, 2] };
        a = ops.avg_pool2d(&a, k)?;
        pools.push((k, shape));
    }
    let logits = ops.linear(&a, &ops.weight("out.weight")?, &ops.weight("out.bias")?, false, false)?;
    // Backward: the seed, then every op's input gradient in reverse.
    let seed = ops.log_softmax_backward(&logits, target)?;
    let mut g = ops.linear(&seed, &ops.weight("out.input_grad.weight")?, &ops.weight("out.input_grad.bias")?, false, false)?;
    for (k, shape) in pools.into_iter().rev() {
        g = ops.avg_pool2d_backward(&g, k, shape)?;
        for _ in 0..cfg.layers_per_block {
            let (p, z) = layers.pop().expect("one saved z per layer");
            let (gamma, beta) = (ops.weight(&format!("{p}.norm.weight"))?, ops.weight(&format!("{p}.norm.bias"))?);
            g = ops.group_norm_silu_backward(&g, &z, &gamma, &beta, groups, eps)?;
            let (w, b) = (ops.weight(&format!("{p}.conv.input_grad.weight"))?, ops.weight(&format!("{p}.conv.input_grad.bias"))?);
            g = ops.conv2d(&g, ConvArgs { weight: &w, bias: &b, spec: ConvSpec::SAME3, chan_add: None, residual: None, out_scale: 1.0 })?;
        }
    }
    Ok(Gradient { logits, grad: g })
}
