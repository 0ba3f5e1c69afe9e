//! `config.json` of a diffusers `UNet2DModel`, parsed and validated.
//!
//! Every field an unconditional or class-conditional pixel-space model uses is read; any value this
//! engine does not implement is an `Error::Unsupported` naming the field, never a silent wrong answer.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::json::{from_value, parse_json};

/// The block kinds of `down_block_types` / `up_block_types` that are implemented, by their
/// diffusers names without the direction (`DownBlock2D`/`UpBlock2D` is `Plain`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// DownBlock2D / UpBlock2D: resnets, then a conv resampler.
    Plain,
    /// AttnDownBlock2D / AttnUpBlock2D: an attention after each resnet; the resampler follows
    /// `downsample_type` / `upsample_type`.
    Attn,
    /// ResnetDownsampleBlock2D / ResnetUpsampleBlock2D: resnets, then a resampling resnet.
    Resnet,
    /// SkipDownBlock2D / SkipUpBlock2D (score-SDE NCSN++): FIR resampling and a skip path of images.
    Skip,
    /// AttnSkipDownBlock2D / AttnSkipUpBlock2D.
    AttnSkip,
}

impl BlockKind {
    pub fn has_attention(self) -> bool {
        matches!(self, BlockKind::Attn | BlockKind::AttnSkip)
    }

    pub fn is_skip(self) -> bool {
        matches!(self, BlockKind::Skip | BlockKind::AttnSkip)
    }
}

/// `time_embedding_type`: how the timestep becomes the vector the time MLP reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeEmbedding {
    /// `Timesteps`: sinusoidal, `block_out_channels[0]` wide.
    Positional,
    /// `GaussianFourierProjection` of log t (score-SDE): sin and cos, 2·`block_out_channels[0]`
    /// wide; the model's output is divided by t (a VE model's σ).
    Fourier,
    /// `nn.Embedding(num_train_timesteps, block_out_channels[0])`: one learned row per integer timestep.
    Learned { num_train_timesteps: usize },
}

/// How class labels enter the time embedding (`class_embed_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassEmbedding {
    /// `class_embed_type: null` with `num_class_embeds`: an `nn.Embedding` table.
    Table,
    /// `class_embed_type: "timestep"`: the label goes through `time_proj` and its own MLP.
    Timestep,
}

/// `act_fn`: the resnets' nonlinearity (diffusers' `get_activation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Silu,
    Mish,
    /// nn.GELU(): the exact (erf) form.
    Gelu,
    Relu,
}

impl Activation {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "silu" | "swish" => Activation::Silu,
            "mish" => Activation::Mish,
            "gelu" => Activation::Gelu,
            "relu" => Activation::Relu,
            _ => return Err(Error::unsupported("act_fn", name, "expected silu, swish, mish, gelu or relu (diffusers' get_activation)")),
        })
    }

    /// The code kernels read (`shaders/activation.wgsl`).
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// `downsample_type` / `upsample_type` of the attention blocks: a conv or a resampling resnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resampler {
    Conv,
    Resnet,
}

/// A validated UNet2DModel configuration with diffusers' defaults filled in.
#[derive(Clone, Debug)]
pub struct UNetConfig {
    pub sample_size: Option<(usize, usize)>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub center_input_sample: bool,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f32,
    pub time_embedding: TimeEmbedding,
    pub class_embedding: Option<ClassEmbedding>,
    pub act_fn: Activation,
    /// `resnet_time_scale_shift: "scale_shift"`: the time embedding scales and shifts the
    /// normalised activations (AdaGN) instead of being added before the norm.
    pub time_scale_shift: bool,
    pub downsample_type: Resampler,
    pub upsample_type: Resampler,
    pub down_blocks: Vec<BlockKind>,
    pub up_blocks: Vec<BlockKind>,
    pub mid_block: bool,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub mid_block_scale_factor: f32,
    pub downsample_padding: usize,
    pub attention_head_dim: Option<usize>,
    /// None (`norm_num_groups: null`, the Skip blocks of NCSN++): each norm takes min(channels / 4, 32).
    pub norm_num_groups: Option<usize>,
    pub attn_norm_num_groups: Option<usize>,
    pub norm_eps: f32,
    pub add_attention: bool,
    /// The labels the model accepts (0..k): `num_class_embeds`, also for `class_embed_type:
    /// "timestep"` (where it states the range the labels were trained on).
    pub num_class_embeds: Option<usize>,
    pub time_embed_dim: usize,
}

/// The raw JSON, with diffusers' defaults. Fields we only check are kept as `Value`.
#[derive(Deserialize)]
struct RawConfig {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
    sample_size: Option<Value>,
    #[serde(default = "three")]
    in_channels: usize,
    #[serde(default = "three")]
    out_channels: usize,
    #[serde(default)]
    center_input_sample: bool,
    #[serde(default = "positional")]
    time_embedding_type: String,
    time_embedding_dim: Option<usize>,
    #[serde(default)]
    freq_shift: f64,
    #[serde(default = "yes")]
    flip_sin_to_cos: bool,
    #[serde(default = "default_down")]
    down_block_types: Vec<String>,
    #[serde(default = "default_mid")]
    mid_block_type: Option<String>,
    #[serde(default = "default_up")]
    up_block_types: Vec<String>,
    #[serde(default = "default_channels")]
    block_out_channels: Vec<usize>,
    #[serde(default = "two")]
    layers_per_block: usize,
    #[serde(default = "one_f")]
    mid_block_scale_factor: f64,
    #[serde(default = "one")]
    downsample_padding: usize,
    #[serde(default = "conv")]
    downsample_type: String,
    #[serde(default = "conv")]
    upsample_type: String,
    #[serde(default = "silu")]
    act_fn: String,
    #[serde(default = "eight")]
    attention_head_dim: Option<usize>,
    #[serde(default = "thirty_two")]
    norm_num_groups: Option<usize>,
    attn_norm_num_groups: Option<usize>,
    #[serde(default = "eps")]
    norm_eps: f64,
    #[serde(default = "default_shift")]
    resnet_time_scale_shift: String,
    #[serde(default = "yes")]
    add_attention: bool,
    class_embed_type: Option<String>,
    num_class_embeds: Option<usize>,
    num_train_timesteps: Option<usize>,
    #[serde(default)]
    dropout: f64,
}

fn three() -> usize {
    3
}
fn two() -> usize {
    2
}
fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn eight() -> Option<usize> {
    Some(8)
}
fn thirty_two() -> Option<usize> {
    Some(32)
}
fn eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}
fn positional() -> String {
    "positional".into()
}
fn conv() -> String {
    "conv".into()
}
fn silu() -> String {
    "silu".into()
}
fn default_shift() -> String {
    "default".into()
}
fn default_mid() -> Option<String> {
    Some("UNetMidBlock2D".into())
}
fn default_channels() -> Vec<usize> {
    vec![224, 448, 672, 896]
}
fn default_down() -> Vec<String> {
    ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"].map(String::from).to_vec()
}
fn default_up() -> Vec<String> {
    ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"].map(String::from).to_vec()
}

impl UNetConfig {
    /// Parses and validates the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let value = parse_json(text).map_err(Error::Config)?;
        if !value.is_object() {
            return Err(Error::Config("config.json is not a JSON object (a diffusers config is {\"key\": value, …})".into()));
        }
        let set: Vec<String> = value.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        let raw: RawConfig = from_value(value).map_err(Error::Config)?;
        raw.validate().map_err(|e| match e {
            // A field diffusers fills with its default (because config.json lacks it) is the
            // likely culprit of a mismatch: say so.
            Error::Config(msg) => {
                let unset: Vec<&str> = DEFAULTED.iter().copied().filter(|f| msg.contains(f) && !set.iter().any(|k| k == f)).collect();
                match unset.is_empty() {
                    true => Error::Config(msg),
                    false => Error::Config(format!("{msg} (not set in config.json, so diffusers' default was used: {})", unset.join(", "))),
                }
            }
            other => other,
        })
    }

    /// Number of resolution levels (= number of down blocks).
    pub fn levels(&self) -> usize {
        self.block_out_channels.len()
    }

    /// Heads and head size of the attention at a level with `channels` channels, as diffusers derives
    /// them: `attention_head_dim: null` means one head over all channels.
    pub fn attention_heads(&self, channels: usize) -> (usize, usize) {
        match self.attention_head_dim {
            Some(d) => (channels / d, d),
            None => (1, channels),
        }
    }

    /// Checks that an input of `h`×`w` halves cleanly at every downsample.
    pub fn check_input_size(&self, h: usize, w: usize) -> Result<()> {
        let factor = 1usize << (self.levels() - 1);
        if h == 0 || w == 0 || !h.is_multiple_of(factor) || !w.is_multiple_of(factor) {
            return Err(Error::Input(format!(
                "sample size {h}x{w} does not halve cleanly {} times (needs multiples of {factor})",
                self.levels() - 1
            )));
        }
        Ok(())
    }
}

/// Fields whose diffusers default shapes the network.
const DEFAULTED: &[&str] = &["block_out_channels", "down_block_types", "up_block_types", "layers_per_block", "in_channels", "out_channels"];

/// Sizes far beyond any model this engine can hold are refused by name before any arithmetic
/// on them can overflow.
fn bounded(field: &str, v: usize, max: usize) -> Result<usize> {
    match v <= max {
        true => Ok(v),
        false => Err(Error::unsupported(field, v, &format!("larger than {max}"))),
    }
}

impl RawConfig {
    fn validate(self) -> Result<UNetConfig> {
        for &c in &self.block_out_channels {
            bounded("block_out_channels", c, 1 << 16)?;
        }
        bounded("in_channels", self.in_channels, 1 << 12)?;
        bounded("out_channels", self.out_channels, 1 << 12)?;
        bounded("layers_per_block", self.layers_per_block, 64)?;
        bounded("num_class_embeds", self.num_class_embeds.unwrap_or(0), 1 << 20)?;
        if let Some(name) = &self.class_name {
            if name != "UNet2DModel" {
                return Err(Error::unsupported("_class_name", name, "only UNet2DModel is implemented"));
            }
        }
        let ch = &self.block_out_channels;
        if ch.is_empty() || ch.contains(&0) {
            return Err(Error::unsupported("block_out_channels", format!("{ch:?}"), "needs at least one non-zero entry"));
        }
        let time_embedding = match self.time_embedding_type.as_str() {
            "positional" => TimeEmbedding::Positional,
            "fourier" => TimeEmbedding::Fourier,
            "learned" => match self.num_train_timesteps {
                Some(t) if t > 0 => TimeEmbedding::Learned { num_train_timesteps: bounded("num_train_timesteps", t, 1 << 20)? },
                _ => return Err(Error::Config("time_embedding_type \"learned\" needs num_train_timesteps (the rows of its table)".into())),
            },
            other => return Err(Error::unsupported("time_embedding_type", other, "expected positional, fourier or learned")),
        };
        let class_embedding = match (self.class_embed_type.as_deref(), self.num_class_embeds) {
            (None, None) => None,
            (None, Some(_)) => Some(ClassEmbedding::Table),
            (Some("timestep"), Some(_)) => Some(ClassEmbedding::Timestep),
            (Some("timestep"), None) => {
                return Err(Error::unsupported(
                    "class_embed_type",
                    "timestep",
                    "needs num_class_embeds too, stating how many labels the model takes (diffusers does not read it for this type; \
                     add it to config.json)",
                ))
            }
            (Some("identity"), _) => {
                return Err(Error::unsupported(
                    "class_embed_type",
                    "identity",
                    "its class labels are embedding vectors of time_embed_dim floats, which this engine's integer labels cannot carry",
                ))
            }
            (Some(other), _) => return Err(Error::unsupported("class_embed_type", other, "expected null, timestep or identity")),
        };
        let act_fn = Activation::parse(&self.act_fn)?;
        let time_scale_shift = match self.resnet_time_scale_shift.as_str() {
            "default" => false,
            "scale_shift" => true,
            other => return Err(Error::unsupported("resnet_time_scale_shift", other, "expected default or scale_shift")),
        };
        let resampler = |field: &str, v: &str| match v {
            "conv" => Ok(Resampler::Conv),
            "resnet" => Ok(Resampler::Resnet),
            other => Err(Error::unsupported(field, other, "expected conv or resnet")),
        };
        let downsample_type = resampler("downsample_type", &self.downsample_type)?;
        let upsample_type = resampler("upsample_type", &self.upsample_type)?;
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::unsupported("dropout", self.dropout, "must be in [0, 1) (it is ignored at inference)"));
        }
        if let Some(d) = self.time_embedding_dim {
            bounded("time_embedding_dim", d, 1 << 16)?;
            if d == 0 {
                return Err(Error::unsupported("time_embedding_dim", 0, "must be positive or null"));
            }
        }
        let mid_block = match self.mid_block_type.as_deref() {
            None => false,
            Some("UNetMidBlock2D") => true,
            Some(other) => return Err(Error::unsupported("mid_block_type", other, "only UNetMidBlock2D or null")),
        };
        let kinds = |field: &str, names: &[String], dir: &str| -> Result<Vec<BlockKind>> {
            names
                .iter()
                .map(|n| {
                    // get_down_block / get_up_block strip a "UNetRes" prefix.
                    let bare = n.strip_prefix("UNetRes").unwrap_or(n);
                    let kind = match bare.strip_suffix("Block2D") {
                        Some(k) if k == dir => BlockKind::Plain,
                        Some(k) if k == format!("Attn{dir}") => BlockKind::Attn,
                        Some(k) if k == format!("Resnet{dir}sample") => BlockKind::Resnet,
                        Some(k) if k == format!("Skip{dir}") => BlockKind::Skip,
                        Some(k) if k == format!("AttnSkip{dir}") => BlockKind::AttnSkip,
                        _ => {
                            let why = format!(
                                "implemented: {dir}Block2D, Attn{dir}Block2D, Resnet{dir}sampleBlock2D, Skip{dir}Block2D, AttnSkip{dir}Block2D"
                            );
                            return Err(Error::unsupported(field, n, &why));
                        }
                    };
                    Ok(kind)
                })
                .collect()
        };
        let down_blocks = kinds("down_block_types", &self.down_block_types, "Down")?;
        let up_blocks = kinds("up_block_types", &self.up_block_types, "Up")?;
        if down_blocks.len() != ch.len() || up_blocks.len() != ch.len() {
            return Err(Error::Config(format!(
                "block_out_channels has {} entries but down_block_types {} and up_block_types {}",
                ch.len(),
                down_blocks.len(),
                up_blocks.len()
            )));
        }
        if self.layers_per_block == 0 {
            return Err(Error::unsupported("layers_per_block", 0, "needs at least one resnet per block"));
        }
        if self.in_channels == 0 || self.out_channels == 0 {
            return Err(Error::Config("in_channels and out_channels must be positive".into()));
        }
        if self.norm_num_groups == Some(0) {
            return Err(Error::unsupported("norm_num_groups", 0, "needs at least one group"));
        }
        // The Skip blocks' image path has 3 channels in diffusers (Conv2d(3, …) and Conv2d(…, 3)).
        if down_blocks.iter().any(|k| k.is_skip()) && self.in_channels != 3 {
            return Err(Error::unsupported(
                "in_channels",
                self.in_channels,
                "the Skip down blocks read a 3-channel image (diffusers' skip_conv)",
            ));
        }
        if up_blocks.iter().any(|k| k.is_skip()) && self.out_channels != 3 {
            return Err(Error::unsupported(
                "out_channels",
                self.out_channels,
                "the Skip up blocks write a 3-channel image (diffusers' skip_conv)",
            ));
        }
        if self.norm_num_groups.is_none() {
            if let Some((field, kind)) = down_blocks
                .iter()
                .map(|k| ("down_block_types", k))
                .chain(up_blocks.iter().map(|k| ("up_block_types", k)))
                .find(|(_, k)| !k.is_skip())
            {
                return Err(Error::unsupported(
                    "norm_num_groups",
                    "null",
                    &format!(
                        "only the Skip blocks choose their own groups; {field} has a {kind:?} block (diffusers cannot build it either)"
                    ),
                ));
            }
        }
        if let Some(g) = self.attn_norm_num_groups {
            if g == 0 || !ch[ch.len() - 1].is_multiple_of(g) {
                return Err(Error::unsupported("attn_norm_num_groups", g, "must divide the last block_out_channels"));
            }
        }
        if let Some(d) = self.attention_head_dim {
            if d == 0 {
                return Err(Error::unsupported("attention_head_dim", 0, "must be positive or null"));
            }
        }
        if self.norm_eps.is_nan() || self.norm_eps <= 0.0 {
            return Err(Error::unsupported("norm_eps", self.norm_eps, "must be positive"));
        }
        if self.downsample_padding > 1 {
            return Err(Error::unsupported("downsample_padding", self.downsample_padding, "only 0 (asymmetric) and 1"));
        }
        if self.num_class_embeds == Some(0) {
            return Err(Error::unsupported("num_class_embeds", 0, "must be positive or null"));
        }
        let side = |v: &Value| v.as_u64().filter(|&s| (1..=1 << 16).contains(&s)).map(|s| s as usize);
        let sample_size = match &self.sample_size {
            None | Some(Value::Null) => None,
            Some(v) => {
                let hw = match v {
                    Value::Number(_) => side(v).map(|s| (s, s)),
                    Value::Array(a) if a.len() == 2 => side(&a[0]).zip(side(&a[1])),
                    _ => None,
                };
                let why = "must be an integer or [height, width], each from 1 to 65536";
                Some(hw.ok_or_else(|| Error::unsupported("sample_size", v, why))?)
            }
        };
        let cfg = UNetConfig {
            sample_size,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            center_input_sample: self.center_input_sample,
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift as f32,
            time_embedding,
            class_embedding,
            act_fn,
            time_scale_shift,
            downsample_type,
            upsample_type,
            down_blocks,
            up_blocks,
            mid_block,
            block_out_channels: ch.clone(),
            layers_per_block: self.layers_per_block,
            mid_block_scale_factor: self.mid_block_scale_factor as f32,
            downsample_padding: self.downsample_padding,
            attention_head_dim: self.attention_head_dim,
            norm_num_groups: self.norm_num_groups,
            attn_norm_num_groups: self.attn_norm_num_groups,
            norm_eps: self.norm_eps as f32,
            add_attention: self.add_attention,
            num_class_embeds: self.num_class_embeds,
            time_embed_dim: self.time_embedding_dim.unwrap_or(ch[0] * 4),
        };
        if let Some((h, w)) = cfg.sample_size {
            cfg.check_input_size(h, w).map_err(|_| {
                Error::unsupported("sample_size", format!("{h}x{w}"), &format!("does not halve cleanly {} times", cfg.levels() - 1))
            })?;
        }
        cfg.check_blocks()?;
        Ok(cfg)
    }
}
