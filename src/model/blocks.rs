//! The blocks of a UNet2DModel as diffusers' `get_down_block`, `UNetMidBlock2D` and `get_up_block`
//! build them: each resnet's channels, groups, scale and resampling, each attention's heads and
//! norm. Derived once here for both the forward (`unet.rs`) and the expected weights (`weights.rs`),
//! so the two cannot disagree.

use super::config::{Activation, BlockKind, Resampler, UNetConfig};
use super::weights::up_block_channels;
use crate::error::{Error, Result};

/// The Skip blocks' `output_scale_factor` (diffusers' default for them: √2).
const SKIP_SCALE: f32 = std::f32::consts::SQRT_2;

/// A resnet's resampling of its input and hidden state, between norm1 and conv1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    None,
    /// ×½: `avg_pool2d(2)` (`fir` false) or the FIR filter [1, 3, 3, 1] (`downsample_2d`).
    Down {
        fir: bool,
    },
    /// ×2: nearest neighbour (`fir` false) or the FIR filter (`upsample_2d`).
    Up {
        fir: bool,
    },
}

/// One `ResnetBlock2D`.
#[derive(Clone, Debug)]
pub struct ResnetSpec {
    pub prefix: String,
    pub c_in: usize,
    pub c_out: usize,
    /// norm1's and norm2's groups.
    pub groups: usize,
    pub groups_out: usize,
    pub eps: f32,
    /// output_scale_factor.
    pub scale: f32,
    pub act: Activation,
    /// time_embedding_norm "scale_shift" (AdaGN).
    pub scale_shift: bool,
    pub resample: Resample,
    /// A 1×1 `conv_shortcut` (channels change, or `use_in_shortcut`).
    pub shortcut: bool,
}

/// One `Attention` (residual, bias, no cross-attention).
#[derive(Clone, Debug)]
pub struct AttentionSpec {
    pub prefix: String,
    pub channels: usize,
    pub heads: usize,
    pub dim_head: usize,
    /// Its `group_norm`, if it has one (the mid block's of a scale_shift model has none).
    pub groups: Option<usize>,
    pub eps: f32,
    pub rescale: f32,
}

/// What ends a down block (none at the last level).
#[derive(Clone, Debug)]
pub enum Downsampler {
    /// `Downsample2D(use_conv=True)`: a stride-2 3×3 conv; `pad` is downsample_padding.
    Conv { prefix: String, pad: usize },
    /// A resnet with down=True.
    Resnet(ResnetSpec),
    /// The Skip blocks: `resnet_down` (FIR), and the image path FIR-downsampled, projected by the
    /// 1×1 `skip_conv` and added.
    Skip { resnet: ResnetSpec, skip_conv: String },
}

/// What ends an up block (none at the last level).
#[derive(Clone, Debug)]
pub enum Upsampler {
    /// `Upsample2D(use_conv=True)`: nearest ×2, then a 3×3 conv.
    Conv { prefix: String },
    /// A resnet with up=True.
    Resnet(ResnetSpec),
    /// The Skip blocks: the image path gains skip_conv(silu(skip_norm(h))), then `resnet_up` (FIR).
    Skip { resnet: ResnetSpec, skip_norm: String, skip_groups: usize, skip_conv: String },
}

#[derive(Clone, Debug)]
pub struct DownBlock {
    pub kind: BlockKind,
    pub resnets: Vec<ResnetSpec>,
    /// The attention after resnet j, if any.
    pub attentions: Vec<Option<AttentionSpec>>,
    pub sampler: Option<Downsampler>,
}

#[derive(Clone, Debug)]
pub struct UpBlock {
    pub kind: BlockKind,
    pub resnets: Vec<ResnetSpec>,
    pub attentions: Vec<Option<AttentionSpec>>,
    pub sampler: Option<Upsampler>,
}

#[derive(Clone, Debug)]
pub struct MidBlock {
    pub resnets: [ResnetSpec; 2],
    pub attention: Option<AttentionSpec>,
}

/// min(channels / 4, 32): the groups of the Skip blocks and of `norm_num_groups: null`.
fn quarter_groups(c: usize) -> usize {
    (c / 4).min(32)
}

impl UNetConfig {
    fn resnet(&self, prefix: String, c_in: usize, c_out: usize, groups: usize) -> ResnetSpec {
        ResnetSpec {
            prefix,
            c_in,
            c_out,
            groups,
            groups_out: groups,
            eps: self.norm_eps,
            scale: 1.0,
            act: self.act_fn,
            scale_shift: self.time_scale_shift,
            resample: Resample::None,
            shortcut: c_in != c_out,
        }
    }

    fn attention_spec(&self, prefix: String, c: usize, groups: Option<usize>, rescale: f32) -> AttentionSpec {
        let (heads, dim_head) = self.attention_heads(c);
        AttentionSpec { prefix, channels: c, heads, dim_head, groups, eps: self.norm_eps, rescale }
    }

    /// `norm_num_groups`, which every non-Skip block needs (validated at parse).
    fn groups(&self) -> usize {
        self.norm_num_groups.unwrap_or(0)
    }

    pub fn down_blocks(&self) -> Vec<DownBlock> {
        let ch = &self.block_out_channels;
        let mut c_out = ch[0];
        let mut blocks = Vec::new();
        for (i, &kind) in self.down_blocks.iter().enumerate() {
            let c_in = c_out;
            c_out = ch[i];
            let p = format!("down_blocks.{i}");
            let skip = kind.is_skip();
            let (mut resnets, mut attentions) = (Vec::new(), Vec::new());
            for j in 0..self.layers_per_block {
                let c = if j == 0 { c_in } else { c_out };
                let mut r = self.resnet(format!("{p}.resnets.{j}"), c, c_out, self.groups());
                if skip {
                    (r.groups, r.groups_out, r.scale) = (quarter_groups(c), quarter_groups(c_out), SKIP_SCALE);
                }
                resnets.push(r);
                let attn = match kind {
                    BlockKind::Attn => Some(self.attention_spec(format!("{p}.attentions.{j}"), c_out, Some(self.groups()), 1.0)),
                    BlockKind::AttnSkip => Some(self.attention_spec(format!("{p}.attentions.{j}"), c_out, Some(32), SKIP_SCALE)),
                    _ => None,
                };
                attentions.push(attn);
            }
            let sampler = (i + 1 < ch.len()).then(|| {
                let down = |prefix: String, fir: bool| ResnetSpec {
                    resample: Resample::Down { fir },
                    ..self.resnet(prefix, c_out, c_out, self.groups())
                };
                match kind {
                    BlockKind::Plain => Downsampler::Conv { prefix: format!("{p}.downsamplers.0.conv"), pad: self.downsample_padding },
                    BlockKind::Attn if self.downsample_type == Resampler::Conv => {
                        Downsampler::Conv { prefix: format!("{p}.downsamplers.0.conv"), pad: self.downsample_padding }
                    }
                    BlockKind::Attn | BlockKind::Resnet => Downsampler::Resnet(down(format!("{p}.downsamplers.0"), false)),
                    BlockKind::Skip | BlockKind::AttnSkip => {
                        let g = quarter_groups(c_out);
                        let resnet = ResnetSpec {
                            groups: g,
                            groups_out: g,
                            scale: SKIP_SCALE,
                            shortcut: true,
                            ..down(format!("{p}.resnet_down"), true)
                        };
                        Downsampler::Skip { resnet, skip_conv: format!("{p}.skip_conv") }
                    }
                }
            });
            blocks.push(DownBlock { kind, resnets, attentions, sampler });
        }
        blocks
    }

    pub fn mid(&self) -> Option<MidBlock> {
        if !self.mid_block {
            return None;
        }
        let c = self.block_out_channels[self.levels() - 1];
        let groups = self.norm_num_groups.unwrap_or(quarter_groups(c));
        let resnet =
            |k: usize| ResnetSpec { scale: self.mid_block_scale_factor, ..self.resnet(format!("mid_block.resnets.{k}"), c, c, groups) };
        // UNetMidBlock2D: attn_groups default to the resnets' groups, but to none (no group norm)
        // when the time embedding scales and shifts.
        let attn_groups = self.attn_norm_num_groups.or((!self.time_scale_shift).then_some(groups));
        let attention =
            self.add_attention.then(|| self.attention_spec("mid_block.attentions.0".into(), c, attn_groups, self.mid_block_scale_factor));
        Some(MidBlock { resnets: [resnet(0), resnet(1)], attention })
    }

    pub fn up_blocks(&self) -> Vec<UpBlock> {
        let levels = self.levels();
        up_block_channels(self)
            .into_iter()
            .enumerate()
            .map(|(i, up)| {
                let kind = self.up_blocks[i];
                let p = format!("up_blocks.{i}");
                let last = up.resnet_inputs.len() - 1;
                let mut resnets = Vec::new();
                let mut attentions = Vec::new();
                for (j, &(c_below, c_skip)) in up.resnet_inputs.iter().enumerate() {
                    let c_in = c_below + c_skip;
                    let mut r = self.resnet(format!("{p}.resnets.{j}"), c_in, up.out, self.groups());
                    match kind {
                        BlockKind::Skip => (r.groups, r.groups_out, r.scale) = (quarter_groups(c_in), quarter_groups(up.out), SKIP_SCALE),
                        // diffusers' AttnSkipUpBlock2D writes min(resnet_in + skip // 4, 32) (sic).
                        BlockKind::AttnSkip => {
                            (r.groups, r.groups_out, r.scale) = ((c_below + c_skip / 4).min(32), quarter_groups(up.out), SKIP_SCALE)
                        }
                        _ => {}
                    }
                    resnets.push(r);
                    let attn = match kind {
                        BlockKind::Attn => Some(self.attention_spec(format!("{p}.attentions.{j}"), up.out, Some(self.groups()), 1.0)),
                        // One attention, after the last resnet.
                        BlockKind::AttnSkip if j == last => {
                            Some(self.attention_spec(format!("{p}.attentions.0"), up.out, Some(32), SKIP_SCALE))
                        }
                        _ => None,
                    };
                    attentions.push(attn);
                }
                let sampler = (i + 1 < levels).then(|| {
                    let upr = |prefix: String, fir: bool| ResnetSpec {
                        resample: Resample::Up { fir },
                        ..self.resnet(prefix, up.out, up.out, self.groups())
                    };
                    match kind {
                        BlockKind::Plain => Upsampler::Conv { prefix: format!("{p}.upsamplers.0.conv") },
                        BlockKind::Attn if self.upsample_type == Resampler::Conv => {
                            Upsampler::Conv { prefix: format!("{p}.upsamplers.0.conv") }
                        }
                        BlockKind::Attn | BlockKind::Resnet => Upsampler::Resnet(upr(format!("{p}.upsamplers.0"), false)),
                        BlockKind::Skip | BlockKind::AttnSkip => {
                            let g = quarter_groups(up.out);
                            let resnet = ResnetSpec {
                                groups: g,
                                groups_out: g,
                                scale: SKIP_SCALE,
                                shortcut: true,
                                ..upr(format!("{p}.resnet_up"), true)
                            };
                            Upsampler::Skip {
                                resnet,
                                skip_norm: format!("{p}.skip_norm"),
                                skip_groups: g,
                                skip_conv: format!("{p}.skip_conv"),
                            }
                        }
                    }
                });
                UpBlock { kind, resnets, attentions, sampler }
            })
            .collect()
    }

    /// `conv_norm_out`'s groups.
    pub fn out_groups(&self) -> usize {
        self.norm_num_groups.unwrap_or(quarter_groups(self.block_out_channels[0]))
    }

    /// Every group norm divides its channels and every attention has a head: what diffusers'
    /// constructors would refuse, refused here by the field that causes it.
    pub(crate) fn check_blocks(&self) -> Result<()> {
        let field = if self.norm_num_groups.is_some() { "norm_num_groups" } else { "block_out_channels" };
        let norm = |name: &str, c: usize, g: usize| -> Result<()> {
            match g > 0 && c.is_multiple_of(g) {
                true => Ok(()),
                false => Err(Error::unsupported(field, g, &format!("{name} would normalise {c} channels in {g} groups"))),
            }
        };
        let resnet = |r: &ResnetSpec| -> Result<()> {
            norm(&format!("{}.norm1", r.prefix), r.c_in, r.groups)?;
            norm(&format!("{}.norm2", r.prefix), r.c_out, r.groups_out)
        };
        let attention = |a: &AttentionSpec| -> Result<()> {
            if a.heads == 0 {
                let why = format!("larger than the {} channels of {}", a.channels, a.prefix);
                return Err(Error::unsupported("attention_head_dim", self.attention_head_dim.unwrap_or(0), &why));
            }
            match a.groups {
                Some(g) => norm(&format!("{}.group_norm", a.prefix), a.channels, g),
                None => Ok(()),
            }
        };
        for b in self.down_blocks() {
            b.resnets.iter().try_for_each(resnet)?;
            b.attentions.iter().flatten().try_for_each(attention)?;
            match &b.sampler {
                Some(Downsampler::Resnet(r)) | Some(Downsampler::Skip { resnet: r, .. }) => resnet(r)?,
                _ => {}
            }
        }
        if let Some(m) = self.mid() {
            m.resnets.iter().try_for_each(resnet)?;
            m.attention.iter().try_for_each(attention)?;
        }
        for b in self.up_blocks() {
            b.resnets.iter().try_for_each(resnet)?;
            b.attentions.iter().flatten().try_for_each(attention)?;
            match &b.sampler {
                Some(Upsampler::Resnet(r)) => resnet(r)?,
                Some(Upsampler::Skip { resnet: r, skip_norm, skip_groups, .. }) => {
                    resnet(r)?;
                    norm(skip_norm, r.c_out, *skip_groups)?;
                }
                _ => {}
            }
        }
        norm("conv_norm_out", self.block_out_channels[0], self.out_groups())
    }
}
