//! `config.json` of a diffusers `UNet2DModel`, parsed and validated.
//!
//! Every field an unconditional or class-conditional pixel-space model uses is read; any value this
//! engine does not implement is an `Error::Unsupported` naming the field, never a silent wrong answer.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::json::{from_value, parse_json};

/// The block kinds of `down_block_types` / `up_block_types` that are implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    Plain,
    Attn,
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
    pub down_blocks: Vec<BlockKind>,
    pub up_blocks: Vec<BlockKind>,
    pub mid_block: bool,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub mid_block_scale_factor: f32,
    pub downsample_padding: usize,
    pub attention_head_dim: Option<usize>,
    pub norm_num_groups: usize,
    pub attn_norm_num_groups: Option<usize>,
    pub norm_eps: f32,
    pub add_attention: bool,
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
        let check = |field: &str, value: &str, want: &str, why: &str| -> Result<()> {
            if value != want {
                Err(Error::unsupported(field, value, why))
            } else {
                Ok(())
            }
        };
        check("time_embedding_type", &self.time_embedding_type, "positional", "only positional embeddings are implemented")?;
        check("act_fn", &self.act_fn, "silu", "only silu is implemented")?;
        check("resnet_time_scale_shift", &self.resnet_time_scale_shift, "default", "only the additive time embedding is implemented")?;
        check("downsample_type", &self.downsample_type, "conv", "only conv downsampling is implemented")?;
        check("upsample_type", &self.upsample_type, "conv", "only conv upsampling is implemented")?;
        if let Some(t) = &self.class_embed_type {
            return Err(Error::unsupported("class_embed_type", t, "only the nn.Embedding class table (null) is implemented"));
        }
        if let Some(d) = self.time_embedding_dim {
            return Err(Error::unsupported("time_embedding_dim", d, "only the default 4 x block_out_channels[0] is implemented"));
        }
        let mid_block = match self.mid_block_type.as_deref() {
            None => false,
            Some("UNetMidBlock2D") => true,
            Some(other) => return Err(Error::unsupported("mid_block_type", other, "only UNetMidBlock2D or null")),
        };
        let kinds = |field: &str, names: &[String], plain: &str, attn: &str| -> Result<Vec<BlockKind>> {
            names
                .iter()
                .map(|n| {
                    if n == plain {
                        Ok(BlockKind::Plain)
                    } else if n == attn {
                        Ok(BlockKind::Attn)
                    } else {
                        Err(Error::unsupported(field, n, &format!("only {plain} and {attn} are implemented")))
                    }
                })
                .collect()
        };
        let down_blocks = kinds("down_block_types", &self.down_block_types, "DownBlock2D", "AttnDownBlock2D")?;
        let up_blocks = kinds("up_block_types", &self.up_block_types, "UpBlock2D", "AttnUpBlock2D")?;
        let ch = &self.block_out_channels;
        if ch.is_empty() || ch.contains(&0) {
            return Err(Error::unsupported("block_out_channels", format!("{ch:?}"), "needs at least one non-zero entry"));
        }
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
        let norm_num_groups = self.norm_num_groups.unwrap_or_else(|| (ch[0] / 4).min(32));
        if norm_num_groups == 0 {
            return Err(Error::unsupported("norm_num_groups", 0, "needs at least one group"));
        }
        for &c in ch {
            if c % norm_num_groups != 0 {
                return Err(Error::unsupported(
                    "norm_num_groups",
                    norm_num_groups,
                    &format!("block_out_channels entry {c} is not divisible by it"),
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
            down_blocks,
            up_blocks,
            mid_block,
            block_out_channels: ch.clone(),
            layers_per_block: self.layers_per_block,
            mid_block_scale_factor: self.mid_block_scale_factor as f32,
            downsample_padding: self.downsample_padding,
            attention_head_dim: self.attention_head_dim,
            norm_num_groups,
            attn_norm_num_groups: self.attn_norm_num_groups,
            norm_eps: self.norm_eps as f32,
            add_attention: self.add_attention,
            num_class_embeds: self.num_class_embeds,
            time_embed_dim: ch[0] * 4,
        };
        if let Some((h, w)) = cfg.sample_size {
            cfg.check_input_size(h, w).map_err(|_| {
                Error::unsupported("sample_size", format!("{h}x{w}"), &format!("does not halve cleanly {} times", cfg.levels() - 1))
            })?;
        }
        for (level, &kind) in cfg.down_blocks.iter().chain(cfg.up_blocks.iter()).enumerate() {
            let c = if level < ch.len() { ch[level] } else { ch[ch.len() - 1 - (level - ch.len())] };
            if kind == BlockKind::Attn && cfg.attention_heads(c).0 == 0 {
                return Err(Error::unsupported(
                    "attention_head_dim",
                    cfg.attention_head_dim.unwrap_or(0),
                    &format!("larger than the {c} channels of an attention block"),
                ));
            }
        }
        Ok(cfg)
    }
}
