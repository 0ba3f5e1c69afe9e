//! `UNet2DModel.forward`, written once over a `UNetOps` (CPU reference or GPU recorder).
//! It reads like diffusers' `unet_2d.py`, `unet_2d_blocks.py`, `resnet.py` and `attention_processor.py`.

use super::config::{BlockKind, UNetConfig};
use super::weights::up_block_channels;
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
}

/// `UNet2DModel.forward(sample, timestep, class_labels).sample`.
/// `timesteps` holds one f32 per batch item; `class_labels` one label per batch item.
pub fn unet_forward<B: UNetOps>(b: &mut B, cfg: &UNetConfig, sample: &B::T, timesteps: &B::T, class_labels: Option<&B::T>) -> Result<B::T> {
    let mut x = sample.clone();
    if cfg.center_input_sample {
        x = b.affine(&x, 2.0, -1.0)?;
    }
    let emb = time_embedding(b, cfg, timesteps, class_labels)?;

    x = conv(b, "conv_in", &x, ConvSpec::SAME3)?;
    let mut skips = vec![x.clone()];
    let levels = cfg.levels();
    for (i, &kind) in cfg.down_blocks.iter().enumerate() {
        for j in 0..cfg.layers_per_block {
            x = resnet(b, cfg, &format!("down_blocks.{i}.resnets.{j}"), vec![x], &emb, 1.0)?;
            if kind == BlockKind::Attn {
                x = attention(b, cfg, &format!("down_blocks.{i}.attentions.{j}"), &x, cfg.norm_num_groups, 1.0)?;
            }
            skips.push(x.clone());
        }
        if i + 1 < levels {
            // Downsample2D: padding 0 means diffusers' F.pad(x, (0, 1, 0, 1)) before a stride-2 conv.
            let p = cfg.downsample_padding;
            let spec = ConvSpec { stride: 2, pad: [p, p, 1, 1], upsample: false };
            x = conv(b, &format!("down_blocks.{i}.downsamplers.0.conv"), &x, spec)?;
            skips.push(x.clone());
        }
    }

    if cfg.mid_block {
        let scale = cfg.mid_block_scale_factor;
        x = resnet(b, cfg, "mid_block.resnets.0", vec![x], &emb, scale)?;
        if cfg.add_attention {
            let groups = cfg.attn_norm_num_groups.unwrap_or(cfg.norm_num_groups);
            x = attention(b, cfg, "mid_block.attentions.0", &x, groups, scale)?;
        }
        x = resnet(b, cfg, "mid_block.resnets.1", vec![x], &emb, scale)?;
    }

    for (i, up) in up_block_channels(cfg).into_iter().enumerate() {
        for j in 0..up.resnet_inputs.len() {
            let skip = skips.pop().expect("one skip per up-block resnet, by construction");
            let parts = b.channel_parts(x, skip)?;
            x = resnet(b, cfg, &format!("up_blocks.{i}.resnets.{j}"), parts, &emb, 1.0)?;
            if cfg.up_blocks[i] == BlockKind::Attn {
                x = attention(b, cfg, &format!("up_blocks.{i}.attentions.{j}"), &x, cfg.norm_num_groups, 1.0)?;
            }
        }
        if i + 1 < levels {
            let spec = ConvSpec { upsample: true, ..ConvSpec::SAME3 };
            x = conv(b, &format!("up_blocks.{i}.upsamplers.0.conv"), &x, spec)?;
        }
    }

    let (g, beta) = (b.weight("conv_norm_out.weight")?, b.weight("conv_norm_out.bias")?);
    let norm = GroupNorm { gamma: &g, beta: &beta, groups: cfg.norm_num_groups, eps: cfg.norm_eps };
    let (w, bias) = (b.weight("conv_out.weight")?, b.weight("conv_out.bias")?);
    b.norm_silu_conv2d(&[x], norm, ConvArgs::new(&w, &bias, ConvSpec::SAME3))
}

/// Timesteps(positional) → TimestepEmbedding(linear_1, silu, linear_2) (+ class embedding).
fn time_embedding<B: UNetOps>(b: &mut B, cfg: &UNetConfig, t: &B::T, labels: Option<&B::T>) -> Result<B::T> {
    let t_emb = b.timestep_embedding(t, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift)?;
    let (w1, b1) = (b.weight("time_embedding.linear_1.weight")?, b.weight("time_embedding.linear_1.bias")?);
    let (w2, b2) = (b.weight("time_embedding.linear_2.weight")?, b.weight("time_embedding.linear_2.bias")?);
    let h = b.linear(&t_emb, &w1, &b1, false, true)?;
    let emb = b.linear(&h, &w2, &b2, false, false)?;
    // Inputs were validated by `check_sample`; this only refuses a pairing it would get wrong.
    match (cfg.num_class_embeds, labels) {
        (Some(_), Some(labels)) => {
            let table = b.weight("class_embedding.weight")?;
            b.class_embedding_add(&emb, &table, labels)
        }
        (None, None) => Ok(emb),
        _ => Err(crate::Error::Input("class labels must be given exactly when the model has num_class_embeds".into())),
    }
}

fn conv<B: UNetOps>(b: &mut B, name: &str, x: &B::T, spec: ConvSpec) -> Result<B::T> {
    let (w, bias) = (b.weight(&format!("{name}.weight"))?, b.weight(&format!("{name}.bias"))?);
    b.conv2d(x, ConvArgs::new(&w, &bias, spec))
}

/// ResnetBlock2D (time_scale_shift "default"):
/// h = conv1(silu(norm1(x))) + time_emb_proj(silu(temb)); h = conv2(silu(norm2(h)));
/// out = (shortcut(x) + h) / output_scale_factor.
fn resnet<B: UNetOps>(b: &mut B, cfg: &UNetConfig, p: &str, x: Vec<B::T>, temb: &B::T, scale: f32) -> Result<B::T> {
    resnet_block(b, p, x, temb, cfg.norm_num_groups, cfg.norm_eps, scale)
}

/// ResnetBlock2D with weights under prefix `p` on the concatenation of the channel parts `x` (one
/// part, or an up block's `channel_parts`). It takes `x` over, so `x` (in up blocks the largest
/// activation alive) is freed once the shortcut has read it.
pub fn resnet_block<B: UNetOps>(b: &mut B, p: &str, x: Vec<B::T>, temb: &B::T, groups: usize, eps: f32, scale: f32) -> Result<B::T> {
    let w = |b: &B, n: &str| b.weight(&format!("{p}.{n}"));
    // Each intermediate is dropped as soon as its consumer is recorded (`drop`, not shadowing, which
    // would keep it to the end of the block): activation memory is what is alive at once.
    let t = b.linear(temb, &w(b, "time_emb_proj.weight")?, &w(b, "time_emb_proj.bias")?, true, false)?;
    let (g1, b1) = (w(b, "norm1.weight")?, w(b, "norm1.bias")?);
    let norm1 = GroupNorm { gamma: &g1, beta: &b1, groups, eps };
    let (w1, b1) = (w(b, "conv1.weight")?, w(b, "conv1.bias")?);
    let h = b.norm_silu_conv2d(&x, norm1, ConvArgs { chan_add: Some(&t), ..ConvArgs::new(&w1, &b1, ConvSpec::SAME3) })?;
    drop(t);
    let shortcut = if b.weight(&format!("{p}.conv_shortcut.weight")).is_ok() {
        let (ws, bs) = (w(b, "conv_shortcut.weight")?, w(b, "conv_shortcut.bias")?);
        b.conv2d_parts(&x, ConvArgs::new(&ws, &bs, ConvSpec::POINTWISE))?
    } else {
        b.cat(&x)?
    };
    drop(x);
    let (g2, b2) = (w(b, "norm2.weight")?, w(b, "norm2.bias")?);
    let norm2 = GroupNorm { gamma: &g2, beta: &b2, groups, eps };
    let (w2, b2) = (w(b, "conv2.weight")?, w(b, "conv2.bias")?);
    let conv2 = ConvArgs { residual: Some(&shortcut), out_scale: scale, ..ConvArgs::new(&w2, &b2, ConvSpec::SAME3) };
    b.norm_silu_conv2d(&[h], norm2, conv2)
}

/// Attention(residual_connection=True) with AttnProcessor: group_norm → to_q/to_k/to_v →
/// softmax(qkᵀ/√d)·v per head → to_out → + residual → / rescale_output_factor.
/// The projections are Linear layers over channels, i.e. 1x1 convs on the NCHW tensor.
fn attention<B: UNetOps>(b: &mut B, cfg: &UNetConfig, p: &str, x: &B::T, groups: usize, rescale: f32) -> Result<B::T> {
    let [_, c, _, _] = b.dims(x);
    let (heads, dim_head) = cfg.attention_heads(c);
    attention_block(b, p, x, heads, dim_head, groups, cfg.norm_eps, rescale)
}

/// The attention block with weights under prefix `p`.
#[allow(clippy::too_many_arguments)]
pub fn attention_block<B: UNetOps>(
    b: &mut B,
    p: &str,
    x: &B::T,
    heads: usize,
    dim_head: usize,
    groups: usize,
    eps: f32,
    rescale: f32,
) -> Result<B::T> {
    let w = |b: &B, n: &str| b.weight(&format!("{p}.{n}"));
    let h = b.group_norm(x, &w(b, "group_norm.weight")?, &w(b, "group_norm.bias")?, groups, eps, false)?;
    let project = |b: &mut B, x: &B::T, name: &str, residual: Option<&B::T>, out_scale: f32| {
        let (weight, bias) = (w(b, &format!("{name}.weight"))?, w(b, &format!("{name}.bias"))?);
        b.conv2d(x, ConvArgs { residual, out_scale, ..ConvArgs::new(&weight, &bias, ConvSpec::POINTWISE) })
    };
    let q = project(b, &h, "to_q", None, 1.0)?;
    let k = project(b, &h, "to_k", None, 1.0)?;
    let v = project(b, &h, "to_v", None, 1.0)?;
    drop(h);
    let a = b.attention(&q, &k, &v, heads, dim_head)?;
    drop((q, k, v));
    project(b, &a, "to_out.0", Some(x), rescale)
}

/// Validates a forward's inputs against the config; returns the batch size.
pub fn check_sample(cfg: &UNetConfig, shape: &[usize], n_timesteps: usize, labels: Option<&[u32]>) -> Result<usize> {
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
    if n_timesteps != n {
        return Err(Error::Input(format!("{n_timesteps} timesteps for a batch of {n}")));
    }
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
