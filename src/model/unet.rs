//! `UNet2DModel.forward`, written once over a `UNetOps` (CPU reference or GPU recorder).
//! It reads like diffusers' `unet_2d.py`, `unet_2d_blocks.py`, `resnet.py` and `attention_processor.py`.

use super::blocks::{AttentionSpec, Downsampler, Resample, ResnetSpec, Upsampler};
use super::config::{Activation, ClassEmbedding, TimeEmbedding, UNetConfig};
use crate::error::Result;

/// How a conv2d reads its input: stride, zero padding (top, left, bottom, right), and whether the
/// input is first upsampled 2x by nearest neighbour (diffusers' `Upsample2D`, fused into the conv).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvSpec {
    pub stride: usize,
    pub pad: [usize; 4],
    pub upsample: bool,
}

impl ConvSpec {
    pub const SAME3: ConvSpec = ConvSpec { stride: 1, pad: [1, 1, 1, 1], upsample: false };
    pub const POINTWISE: ConvSpec = ConvSpec { stride: 1, pad: [0, 0, 0, 0], upsample: false };

    /// Output height and width for a k×k kernel over an h×w input.
    pub fn out_size(&self, h: usize, w: usize, k: usize) -> Option<(usize, usize)> {
        let (h, w) = if self.upsample { (2 * h, 2 * w) } else { (h, w) };
        let ph = h + self.pad[0] + self.pad[2];
        let pw = w + self.pad[1] + self.pad[3];
        if ph < k || pw < k || self.stride == 0 {
            return None;
        }
        Some(((ph - k) / self.stride + 1, (pw - k) / self.stride + 1))
    }
}

/// One conv2d layer's weights and the epilogue fused into it:
/// out = (conv(x, weight) + bias + chan_add[n, o] + residual) / out_scale.
pub struct ConvArgs<'a, T> {
    pub weight: &'a T,
    pub bias: &'a T,
    pub spec: ConvSpec,
    /// Added per (item, output channel): a resnet's projected time embedding.
    pub chan_add: Option<&'a T>,
    /// Added per element: a resnet's shortcut, an attention block's input.
    pub residual: Option<&'a T>,
    /// The block's `output_scale_factor` / `rescale_output_factor` (1: none).
    pub out_scale: f32,
}

// Not derived: the derive would ask T: Copy.
impl<T> Clone for ConvArgs<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ConvArgs<'_, T> {}

impl<'a, T> ConvArgs<'a, T> {
    /// A plain conv: no epilogue beyond the bias.
    pub fn new(weight: &'a T, bias: &'a T, spec: ConvSpec) -> Self {
        ConvArgs { weight, bias, spec, chan_add: None, residual: None, out_scale: 1.0 }
    }

    /// The same conv over other handles of its tensors (an `Arc<Tensor>` as its `Tensor`).
    pub fn map<U>(self, f: impl Fn(&'a T) -> &'a U) -> ConvArgs<'a, U> {
        ConvArgs {
            weight: f(self.weight),
            bias: f(self.bias),
            spec: self.spec,
            chan_add: self.chan_add.map(&f),
            residual: self.residual.map(&f),
            out_scale: self.out_scale,
        }
    }
}

/// A GroupNorm's affine parameters (γ, β), groups and ε.
pub struct GroupNorm<'a, T> {
    pub gamma: &'a T,
    pub beta: &'a T,
    pub groups: usize,
    pub eps: f32,
}

/// The ops a U-Net forward needs. Tensors are NCHW (or [N, features]); `weight(name)` hands out a
/// model tensor by its diffusers name.
pub trait UNetOps {
    type T: Clone;
    fn weight(&self, name: &str) -> Result<Self::T>;
    /// [n, c, h, w] (2-D tensors report [n, f, 1, 1]).
    fn dims(&self, t: &Self::T) -> [usize; 4];
    /// out = (conv(x) + bias + chan_add[n, o] + residual) / out_scale
    fn conv2d(&mut self, x: &Self::T, conv: ConvArgs<'_, Self::T>) -> Result<Self::T>;
    fn group_norm(&mut self, x: &Self::T, gamma: &Self::T, beta: &Self::T, groups: usize, eps: f32, silu: bool) -> Result<Self::T>;
    /// conv2d(silu(group_norm(x)), …), the first half of every ResnetBlock2D conv, where `x` is
    /// the concatenation of `parts` along channels (`channel_parts`). A backend that can normalise
    /// as its conv reads the input overrides it: the normalised tensor, as large as `x`, is then
    /// never stored.
    fn norm_silu_conv2d(&mut self, parts: &[Self::T], norm: GroupNorm<'_, Self::T>, conv: ConvArgs<'_, Self::T>) -> Result<Self::T> {
        let x = self.cat(parts)?;
        let h = self.group_norm(&x, norm.gamma, norm.beta, norm.groups, norm.eps, true)?;
        drop(x);
        self.conv2d(&h, conv)
    }
    /// conv2d of the concatenation of `parts` (an up block's resnet shortcut).
    fn conv2d_parts(&mut self, parts: &[Self::T], conv: ConvArgs<'_, Self::T>) -> Result<Self::T> {
        let x = self.cat(parts)?;
        self.conv2d(&x, conv)
    }
    /// torch.cat([a, b], dim=1) as the parts its consumers read (`norm_silu_conv2d`,
    /// `conv2d_parts`). The default concatenates into one part; a backend whose convs read several
    /// parts keeps them apart, so the concatenation (an up block's largest tensor) is never stored.
    fn channel_parts(&mut self, a: Self::T, b: Self::T) -> Result<Vec<Self::T>> {
        Ok(vec![self.concat_channels(&a, &b)?])
    }
    /// torch.cat(parts, dim=1) (one part: itself).
    fn cat(&mut self, parts: &[Self::T]) -> Result<Self::T> {
        let (first, rest) = parts.split_first().ok_or_else(|| crate::Error::Input("cat of no tensors".into()))?;
        rest.iter().try_fold(first.clone(), |x, p| self.concat_channels(&x, p))
    }
    /// y = act_out(W act_in(x) + b) on [N, in] → [N, out].
    fn linear(&mut self, x: &Self::T, w: &Self::T, b: &Self::T, silu_in: bool, silu_out: bool) -> Result<Self::T>;
    /// diffusers `get_timestep_embedding` of t [N] → [N, dim].
    fn timestep_embedding(&mut self, t: &Self::T, dim: usize, flip_sin_to_cos: bool, shift: f32) -> Result<Self::T>;
    /// emb + table[labels] (class-conditional models).
    fn class_embedding_add(&mut self, emb: &Self::T, table: &Self::T, labels: &Self::T) -> Result<Self::T>;
    /// x * scale + shift, elementwise.
    fn affine(&mut self, x: &Self::T, scale: f32, shift: f32) -> Result<Self::T>;
    /// torch.cat([a, b], dim=1)
    fn concat_channels(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// softmax(q_hᵀ k_h / √d) applied to v_h per head, on [N, heads*d, L] laid out as NCHW.
    fn attention(&mut self, q: &Self::T, k: &Self::T, v: &Self::T, heads: usize, dim_head: usize) -> Result<Self::T>;
    /// diffusers' `upfirdn2d_native` with the separable kernel k⊗k (already scaled): zeros
    /// inserted to upsample by `up`, `pad` = (before, after) zeros on both axes, correlation with
    /// the flipped kernel, every `down`-th output kept. FIR and plain resampling are all this.
    fn upfirdn2d(&mut self, x: &Self::T, k: &[f32], up: usize, down: usize, pad: [usize; 2]) -> Result<Self::T>;
    /// act(x·(1 + scale[n, c]) + shift[n, c]) where `film` [N, 2C] holds (scale, shift) (a
    /// resnet's AdaGN, `time_embedding_norm: "scale_shift"`); act(x) without it.
    fn activation(&mut self, x: &Self::T, act: Activation, film: Option<&Self::T>) -> Result<Self::T>;
    /// `GaussianFourierProjection` (log, no flip): [sin, cos] of 2π·log(t)·w, t [N] → [N, 2·len(w)].
    fn fourier_embedding(&mut self, t: &Self::T, w: &Self::T) -> Result<Self::T>;
    /// `nn.Embedding`: rows of `table` [K, D] at the (integer) values of `index` [N].
    fn embedding(&mut self, table: &Self::T, index: &Self::T) -> Result<Self::T>;
    /// a + b, elementwise (same shapes).
    fn add(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// x[n] / t[n]: a Fourier (score-SDE) model's output divided by its σ.
    fn divide_by_timestep(&mut self, x: &Self::T, t: &Self::T) -> Result<Self::T>;
}

/// `UNet2DModel.forward(sample, timestep, class_labels).sample`.
/// `timesteps` holds one f32 per batch item; `class_labels` one label per batch item.
pub fn unet_forward<B: UNetOps>(b: &mut B, cfg: &UNetConfig, sample: &B::T, timesteps: &B::T, class_labels: Option<&B::T>) -> Result<B::T> {
    let mut x = sample.clone();
    if cfg.center_input_sample {
        x = b.affine(&x, 2.0, -1.0)?;
    }
    let emb = time_embedding(b, cfg, timesteps, class_labels)?;
    // The Skip blocks' image path starts as the (centred) sample.
    let mut skip_image = cfg.down_blocks.iter().any(|k| k.is_skip()).then(|| x.clone());

    x = conv(b, "conv_in", &x, ConvSpec::SAME3, None)?;
    let mut skips = vec![x.clone()];
    for block in cfg.down_blocks() {
        for (r, a) in block.resnets.iter().zip(&block.attentions) {
            x = resnet_block(b, r, vec![x], &emb)?;
            if let Some(a) = a {
                x = attention_block(b, a, &x)?;
            }
            skips.push(x.clone());
        }
        match &block.sampler {
            None => continue,
            Some(Downsampler::Conv { prefix, pad }) => {
                // Downsample2D: padding 0 means diffusers' F.pad(x, (0, 1, 0, 1)) before a stride-2 conv.
                let spec = ConvSpec { stride: 2, pad: [*pad, *pad, 1, 1], upsample: false };
                x = conv(b, prefix, &x, spec, None)?;
            }
            Some(Downsampler::Resnet(r)) => x = resnet_block(b, r, vec![x], &emb)?,
            Some(Downsampler::Skip { resnet, skip_conv }) => {
                let h = resnet_block(b, resnet, vec![x], &emb)?;
                let image = skip_image.take().expect("a Skip block has the image path");
                let image = resample(b, &image, Resample::Down { fir: true })?;
                x = conv(b, skip_conv, &image, ConvSpec::POINTWISE, Some(&h))?;
                skip_image = Some(image);
            }
        }
        skips.push(x.clone());
    }

    if let Some(mid) = cfg.mid() {
        x = resnet_block(b, &mid.resnets[0], vec![x], &emb)?;
        if let Some(a) = &mid.attention {
            x = attention_block(b, a, &x)?;
        }
        x = resnet_block(b, &mid.resnets[1], vec![x], &emb)?;
    }

    let mut skip_image: Option<B::T> = None;
    for block in cfg.up_blocks() {
        for (r, a) in block.resnets.iter().zip(&block.attentions) {
            let skip = skips.pop().expect("one skip per up-block resnet, by construction");
            let parts = b.channel_parts(x, skip)?;
            x = resnet_block(b, r, parts, &emb)?;
            if let Some(a) = a {
                x = attention_block(b, a, &x)?;
            }
        }
        if block.kind.is_skip() {
            skip_image = skip_image.map(|s| resample(b, &s, Resample::Up { fir: true })).transpose()?;
        }
        match &block.sampler {
            None => {}
            Some(Upsampler::Conv { prefix }) => x = conv(b, prefix, &x, ConvSpec { upsample: true, ..ConvSpec::SAME3 }, None)?,
            Some(Upsampler::Resnet(r)) => x = resnet_block(b, r, vec![x], &emb)?,
            Some(Upsampler::Skip { resnet, skip_norm, skip_groups, skip_conv }) => {
                let (g, beta) = (b.weight(&format!("{skip_norm}.weight"))?, b.weight(&format!("{skip_norm}.bias"))?);
                let norm = GroupNorm { gamma: &g, beta: &beta, groups: *skip_groups, eps: cfg.norm_eps };
                let (w, bias) = (b.weight(&format!("{skip_conv}.weight"))?, b.weight(&format!("{skip_conv}.bias"))?);
                let conv = ConvArgs { residual: skip_image.as_ref(), ..ConvArgs::new(&w, &bias, ConvSpec::SAME3) };
                skip_image = Some(b.norm_silu_conv2d(std::slice::from_ref(&x), norm, conv)?);
                x = resnet_block(b, resnet, vec![x], &emb)?;
            }
        }
    }

    let (g, beta) = (b.weight("conv_norm_out.weight")?, b.weight("conv_norm_out.bias")?);
    let norm = GroupNorm { gamma: &g, beta: &beta, groups: cfg.out_groups(), eps: cfg.norm_eps };
    let (w, bias) = (b.weight("conv_out.weight")?, b.weight("conv_out.bias")?);
    let out = b.norm_silu_conv2d(&[x], norm, ConvArgs { residual: skip_image.as_ref(), ..ConvArgs::new(&w, &bias, ConvSpec::SAME3) })?;
    match cfg.time_embedding {
        TimeEmbedding::Fourier => b.divide_by_timestep(&out, timesteps),
        _ => Ok(out),
    }
}

/// `time_proj`: the timestep (or a label, for class_embed_type "timestep") as a vector.
fn time_proj<B: UNetOps>(b: &mut B, cfg: &UNetConfig, t: &B::T) -> Result<B::T> {
    match cfg.time_embedding {
        TimeEmbedding::Positional => b.timestep_embedding(t, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift),
        // UNet2DModel builds GaussianFourierProjection without flip_sin_to_cos: [sin, cos].
        TimeEmbedding::Fourier => b.fourier_embedding(t, &b.weight("time_proj.weight")?),
        TimeEmbedding::Learned { .. } => b.embedding(&b.weight("time_proj.weight")?, t),
    }
}

/// `TimestepEmbedding` under `prefix`: linear_1, SiLU, linear_2.
fn timestep_mlp<B: UNetOps>(b: &mut B, prefix: &str, x: &B::T) -> Result<B::T> {
    let w = |b: &B, n: &str| b.weight(&format!("{prefix}.{n}"));
    let h = b.linear(x, &w(b, "linear_1.weight")?, &w(b, "linear_1.bias")?, false, true)?;
    b.linear(&h, &w(b, "linear_2.weight")?, &w(b, "linear_2.bias")?, false, false)
}

/// time_proj → TimestepEmbedding (+ the class embedding).
fn time_embedding<B: UNetOps>(b: &mut B, cfg: &UNetConfig, t: &B::T, labels: Option<&B::T>) -> Result<B::T> {
    let t_emb = time_proj(b, cfg, t)?;
    let emb = timestep_mlp(b, "time_embedding", &t_emb)?;
    // Inputs were validated by `check_sample`; this only refuses a pairing it would get wrong.
    match (cfg.class_embedding, labels) {
        (Some(ClassEmbedding::Table), Some(labels)) => {
            let table = b.weight("class_embedding.weight")?;
            b.class_embedding_add(&emb, &table, labels)
        }
        (Some(ClassEmbedding::Timestep), Some(labels)) => {
            let c = time_proj(b, cfg, labels)?;
            let c = timestep_mlp(b, "class_embedding", &c)?;
            b.add(&emb, &c)
        }
        (None, None) => Ok(emb),
        _ => Err(crate::Error::Input("class labels must be given exactly when the model has a class embedding".into())),
    }
}

fn conv<B: UNetOps>(b: &mut B, name: &str, x: &B::T, spec: ConvSpec, residual: Option<&B::T>) -> Result<B::T> {
    let (w, bias) = (b.weight(&format!("{name}.weight"))?, b.weight(&format!("{name}.bias"))?);
    b.conv2d(x, ConvArgs { residual, ..ConvArgs::new(&w, &bias, spec) })
}

/// A resnet's resampling as an `upfirdn2d`: avg_pool2d(2), nearest ×2, or the FIR filter
/// [1, 3, 3, 1] of `downsample_2d` / `upsample_2d` (normalised; ×4 gain when upsampling).
pub fn resample<B: UNetOps>(b: &mut B, x: &B::T, how: Resample) -> Result<B::T> {
    const FIR: [f32; 4] = [0.125, 0.375, 0.375, 0.125];
    const FIR_UP: [f32; 4] = [0.25, 0.75, 0.75, 0.25];
    match how {
        Resample::None => Ok(x.clone()),
        Resample::Down { fir: false } => b.upfirdn2d(x, &[0.5, 0.5], 1, 2, [0, 0]),
        Resample::Down { fir: true } => b.upfirdn2d(x, &FIR, 1, 2, [1, 1]),
        Resample::Up { fir: false } => b.upfirdn2d(x, &[1.0, 1.0], 2, 1, [1, 0]),
        Resample::Up { fir: true } => b.upfirdn2d(x, &FIR_UP, 2, 1, [2, 1]),
    }
}

/// ResnetBlock2D on the concatenation of the channel parts `x` (one part, or an up block's
/// `channel_parts`):
/// h = conv1(resample(act(norm1(x)))) [+ time_emb_proj(act(temb))]; h = act(norm2(h)) [· (1 + scale) + shift];
/// out = (shortcut(resample(x)) + conv2(h)) / output_scale_factor.
/// It takes `x` over, so `x` (in up blocks the largest activation alive) is freed once the
/// shortcut has read it.
pub fn resnet_block<B: UNetOps>(b: &mut B, r: &ResnetSpec, x: Vec<B::T>, temb: &B::T) -> Result<B::T> {
    let w = |b: &B, n: &str| b.weight(&format!("{}.{n}", r.prefix));
    let silu = r.act == Activation::Silu;
    // Each intermediate is dropped as soon as its consumer is recorded (`drop`, not shadowing, which
    // would keep it to the end of the block): activation memory is what is alive at once.
    let (pw, pb) = (w(b, "time_emb_proj.weight")?, w(b, "time_emb_proj.bias")?);
    let t = match silu {
        true => b.linear(temb, &pw, &pb, true, false)?,
        false => {
            let a = b.activation(temb, r.act, None)?;
            b.linear(&a, &pw, &pb, false, false)?
        }
    };
    let (g1, b1) = (w(b, "norm1.weight")?, w(b, "norm1.bias")?);
    let norm1 = GroupNorm { gamma: &g1, beta: &b1, groups: r.groups, eps: r.eps };
    let (w1, c1) = (w(b, "conv1.weight")?, w(b, "conv1.bias")?);
    // "default": the projected embedding is added to conv1's output (before norm2).
    let conv1 = ConvArgs { chan_add: (!r.scale_shift).then_some(&t), ..ConvArgs::new(&w1, &c1, ConvSpec::SAME3) };
    let (h, x) = if r.resample == Resample::None && silu {
        (b.norm_silu_conv2d(&x, norm1, conv1)?, x)
    } else {
        let xc = b.cat(&x)?;
        drop(x);
        let n = b.group_norm(&xc, norm1.gamma, norm1.beta, r.groups, r.eps, silu)?;
        let a = if silu { n } else { b.activation(&n, r.act, None)? };
        let a = resample(b, &a, r.resample)?;
        let xs = resample(b, &xc, r.resample)?;
        drop(xc);
        (b.conv2d(&a, conv1)?, vec![xs])
    };
    let shortcut = if r.shortcut {
        let (ws, bs) = (w(b, "conv_shortcut.weight")?, w(b, "conv_shortcut.bias")?);
        b.conv2d_parts(&x, ConvArgs::new(&ws, &bs, ConvSpec::POINTWISE))?
    } else {
        b.cat(&x)?
    };
    drop(x);
    let (g2, b2) = (w(b, "norm2.weight")?, w(b, "norm2.bias")?);
    let (w2, c2) = (w(b, "conv2.weight")?, w(b, "conv2.bias")?);
    let conv2 = ConvArgs { residual: Some(&shortcut), out_scale: r.scale, ..ConvArgs::new(&w2, &c2, ConvSpec::SAME3) };
    if silu && !r.scale_shift {
        let norm2 = GroupNorm { gamma: &g2, beta: &b2, groups: r.groups_out, eps: r.eps };
        return b.norm_silu_conv2d(&[h], norm2, conv2);
    }
    let n = b.group_norm(&h, &g2, &b2, r.groups_out, r.eps, false)?;
    drop(h);
    let a = b.activation(&n, r.act, r.scale_shift.then_some(&t))?;
    drop(n);
    b.conv2d(&a, conv2)
}

/// Attention(residual_connection=True) with AttnProcessor: [group_norm →] to_q/to_k/to_v →
/// softmax(qkᵀ/√d)·v per head → to_out → + residual → / rescale_output_factor.
/// The projections are Linear layers over channels, i.e. 1x1 convs on the NCHW tensor.
pub fn attention_block<B: UNetOps>(b: &mut B, a: &AttentionSpec, x: &B::T) -> Result<B::T> {
    let w = |b: &B, n: &str| b.weight(&format!("{}.{n}", a.prefix));
    let h = match a.groups {
        Some(groups) => b.group_norm(x, &w(b, "group_norm.weight")?, &w(b, "group_norm.bias")?, groups, a.eps, false)?,
        None => x.clone(),
    };
    let project = |b: &mut B, x: &B::T, name: &str, residual: Option<&B::T>, out_scale: f32| {
        let (weight, bias) = (w(b, &format!("{name}.weight"))?, w(b, &format!("{name}.bias"))?);
        b.conv2d(x, ConvArgs { residual, out_scale, ..ConvArgs::new(&weight, &bias, ConvSpec::POINTWISE) })
    };
    let q = project(b, &h, "to_q", None, 1.0)?;
    let k = project(b, &h, "to_k", None, 1.0)?;
    let v = project(b, &h, "to_v", None, 1.0)?;
    drop(h);
    let o = b.attention(&q, &k, &v, a.heads, a.dim_head)?;
    drop((q, k, v));
    project(b, &o, "to_out.0", Some(x), a.rescale)
}

/// Validates a forward's inputs against the config; returns the batch size.
pub fn check_sample(cfg: &UNetConfig, shape: &[usize], timesteps: &[f32], labels: Option<&[u32]>) -> Result<usize> {
    use crate::Error;
    let [n, c, h, w] = match shape {
        &[n, c, h, w] => [n, c, h, w],
        _ => return Err(Error::Input(format!("sample must be [N, C, H, W], got {shape:?}"))),
    };
    if n == 0 {
        return Err(Error::Input("sample has batch size 0".into()));
    }
    if c != cfg.in_channels {
        return Err(Error::Input(format!("sample has {c} channels, the model's in_channels is {}", cfg.in_channels)));
    }
    cfg.check_input_size(h, w)?;
    if timesteps.len() != n {
        return Err(Error::Input(format!("{} timesteps for a batch of {n}", timesteps.len())));
    }
    cfg.check_timesteps(timesteps)?;
    match (cfg.num_class_embeds, labels) {
        (Some(k), Some(l)) => {
            if l.len() != n {
                return Err(Error::Input(format!("{} class labels for a batch of {n}", l.len())));
            }
            if let Some(bad) = l.iter().find(|&&v| v as usize >= k) {
                return Err(Error::Input(format!("class label {bad} out of range: the model has num_class_embeds = {k}")));
            }
        }
        (Some(_), None) => return Err(Error::Input("this model is class-conditional: class labels are required".into())),
        (None, Some(_)) => {
            return Err(Error::Input("this model has no class embedding (num_class_embeds is null): class labels are not accepted".into()))
        }
        (None, None) => {}
    }
    Ok(n)
}

impl UNetConfig {
    /// The timesteps this model's time embedding can read: a Fourier model takes log t (t > 0,
    /// its σ), a learned table an integer row.
    pub fn check_timesteps(&self, timesteps: &[f32]) -> Result<()> {
        use crate::Error;
        match self.time_embedding {
            TimeEmbedding::Positional => Ok(()),
            TimeEmbedding::Fourier => match timesteps.iter().find(|t| !(**t > 0.0 && t.is_finite())) {
                Some(t) => {
                    Err(Error::Input(format!("timestep {t}: a Fourier time embedding (score-SDE) reads log t, so t must be a positive σ")))
                }
                None => Ok(()),
            },
            TimeEmbedding::Learned { num_train_timesteps } => {
                match timesteps.iter().find(|t| t.fract() != 0.0 || **t < 0.0 || **t >= num_train_timesteps as f32) {
                    Some(t) => Err(Error::Input(format!(
                        "timestep {t}: a learned time embedding has one row per integer timestep 0..{num_train_timesteps}"
                    ))),
                    None => Ok(()),
                }
            }
        }
    }
}
