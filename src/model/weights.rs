//! Weights of a UNet2DModel: read from `diffusion_pytorch_model.safetensors`, converted to f32,
//! renamed from diffusers' legacy attention names, and checked tensor by tensor against the config.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};

use super::blocks::{AttentionSpec, Downsampler, ResnetSpec, Upsampler};
use super::config::{ClassEmbedding, TimeEmbedding, UNetConfig};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// All weights of one model by their (modern) diffusers name.
#[derive(Clone, Debug)]
pub struct Weights {
    pub tensors: HashMap<String, Tensor>,
    /// dtype the file stored (F32, F16 or BF16) — reported, the engine computes in f32.
    pub stored_dtype: String,
}

impl Weights {
    /// Parses a safetensors file and validates it against `cfg`. `file` names it in errors.
    pub fn from_safetensors(bytes: &[u8], file: &str, cfg: &UNetConfig) -> Result<Self> {
        Self::read_safetensors(bytes, file, cfg, true)
    }

    /// The names, shapes and stored dtype from a safetensors file, checked like `from_safetensors`
    /// (header, dtypes, names and shapes against the config), with every tensor's data left empty:
    /// neither copied nor checked for NaN. For a thread that only plans runs while others (the
    /// browser's CPU workers) parse and check the data and compute with it.
    pub fn from_safetensors_header(bytes: &[u8], file: &str, cfg: &UNetConfig) -> Result<Self> {
        Self::read_safetensors(bytes, file, cfg, false)
    }

    fn read_safetensors(bytes: &[u8], file: &str, cfg: &UNetConfig, with_data: bool) -> Result<Self> {
        let (tensors, stored_dtype) = read_tensors(bytes, file, with_data)?;
        let tensors = tensors.into_iter().map(|(k, v)| (modern_name(&k), v)).collect();
        let mut w = Weights { tensors, stored_dtype };
        w.validate(cfg)?;
        w.flatten_to_conv();
        Ok(w)
    }

    /// Builds weights from named host tensors (used by tests) and validates them.
    pub fn from_tensors(tensors: HashMap<String, Tensor>, cfg: &UNetConfig) -> Result<Self> {
        let tensors = tensors.into_iter().map(|(k, v)| (modern_name(&k), v)).collect();
        let mut w = Weights { tensors, stored_dtype: "F32".into() };
        w.validate(cfg)?;
        w.flatten_to_conv();
        Ok(w)
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor(name.into()))
    }

    /// False for weights read with `from_safetensors_header` (shapes without values).
    pub fn has_data(&self) -> bool {
        self.tensors.values().all(|t| t.data.len() == t.shape.iter().product::<usize>())
    }

    /// Counted from the shapes (also right for weights read with `from_safetensors_header`).
    pub fn parameter_count(&self) -> usize {
        self.tensors.values().map(|t| t.shape.iter().product::<usize>()).sum()
    }

    /// Attention projections are Linear layers over channels; the engine runs them as 1x1 convs,
    /// so their [o, i] weights are viewed as [o, i, 1, 1].
    fn flatten_to_conv(&mut self) {
        for (name, t) in self.tensors.iter_mut() {
            if name.contains(".attentions.") && name.ends_with(".weight") && t.shape.len() == 2 {
                t.shape.extend([1, 1]);
            }
        }
    }

    /// Every expected tensor is present with the expected shape, and nothing else is there.
    /// Attention projections may be stored as [o, i] (Linear) or [o, i, 1, 1] (legacy 1x1 conv).
    fn validate(&self, cfg: &UNetConfig) -> Result<()> {
        let expected = expected_shapes(cfg);
        for (name, shape) in &expected {
            let t = self.get(name)?;
            let flat_ok = shape.len() == 2 && t.shape.len() == 4 && t.shape[2..] == [1, 1] && t.shape[..2] == shape[..];
            if &t.shape != shape && !flat_ok {
                return Err(Error::Shape { name: name.clone(), got: t.shape.clone(), expected: shape.clone() });
            }
        }
        let known: std::collections::HashSet<&String> = expected.iter().map(|(n, _)| n).collect();
        let mut extra: Vec<&String> = self.tensors.keys().filter(|k| !known.contains(k)).collect();
        extra.sort();
        if let Some(first) = extra.first() {
            return Err(Error::Config(format!(
                "the weights hold {} tensor(s) this config does not use, first `{first}`: config and weights do not match",
                extra.len()
            )));
        }
        Ok(())
    }
}

/// The tensors of a safetensors file by their stored names, converted to f32 and checked (header,
/// dtypes, sizes, NaN/Inf), and the dtype it stored; with `with_data` false, shapes only (every
/// tensor's data left empty). `file` names it in errors. The U-Net's and the classifier's loader.
pub fn read_tensors(bytes: &[u8], file: &str, with_data: bool) -> Result<(HashMap<String, Tensor>, String)> {
    if bytes.trim_ascii_start().starts_with(b"<") {
        let msg = "the file is HTML or XML, not safetensors: the URL points at a web page (an error or login page?)".into();
        return Err(Error::Safetensors { file: file.into(), msg });
    }
    if let Some(name) = duplicate_name(bytes) {
        return Err(Error::Safetensors { file: file.into(), msg: format!("the header names tensor `{name}` twice") });
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors { file: file.into(), msg: describe(e, bytes) })?;
    if with_data {
        // Converted to f32 they may not fit the host (a wasm32 heap): said before converting.
        let values: u64 = st.tensors().iter().map(|(_, v)| v.shape().iter().product::<usize>() as u64).sum();
        super::memory::check_host_bytes(4 * values, &format!("the weights of `{file}` as f32 ({values} values)"))?;
    }
    let mut tensors = HashMap::new();
    let mut stored_dtype = String::from("F32");
    for (name, view) in st.tensors() {
        let data = if with_data {
            to_f32(&name, view.dtype(), view.data())?
        } else {
            to_f32(&name, view.dtype(), &[])?; // the dtype check alone
            Vec::new()
        };
        // Checked here, by name: a NaN weight would otherwise surface as a black image.
        if let Some(index) = first_non_finite(&data) {
            return Err(Error::NonFiniteWeight { name, index });
        }
        if view.dtype() != Dtype::F32 {
            stored_dtype = format!("{:?}", view.dtype());
        }
        let size_error =
            || Error::Safetensors { file: file.into(), msg: format!("tensor `{name}` has a size that does not match its shape") };
        let t = if with_data {
            Tensor::new(view.shape().to_vec(), data).map_err(|_| size_error())?
        } else {
            // SafeTensors checked the byte range against the shape and dtype already.
            Tensor { shape: view.shape().to_vec(), data }
        };
        tensors.insert(name, t);
    }
    Ok((tensors, stored_dtype))
}

/// The JSON header of a safetensors file and the length of the data after it, if the length
/// prefix fits the file (the diagnostics below read it; `SafeTensors` does the real parse).
fn header(bytes: &[u8]) -> Option<(&[u8], u64)> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let end = 8usize.checked_add(n)?;
    Some((bytes.get(8..end)?, (bytes.len() - end) as u64))
}

/// A tensor name that the header's JSON object holds twice (JSON parsers keep the last silently).
fn duplicate_name(bytes: &[u8]) -> Option<String> {
    struct Keys(Option<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Keys, A::Error> {
                    let (mut seen, mut twice) = (std::collections::HashSet::new(), None);
                    // Read to the end (serde_json refuses a map left half read).
                    while let Some(k) = map.next_key::<String>()? {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        if !seen.insert(k.clone()) {
                            twice.get_or_insert(k);
                        }
                    }
                    Ok(Keys(twice))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_slice::<Keys>(header(bytes)?.0).ok()?.0
}

/// (the data length the header declares: its largest end offset, the data length there is).
fn data_lengths(bytes: &[u8]) -> Option<(u64, u64)> {
    let (json, data_len) = header(bytes)?;
    let header: serde_json::Value = serde_json::from_slice(json).ok()?;
    let ends = header.as_object()?.values().filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64());
    Some((ends.max().unwrap_or(0), data_len))
}

/// The first tensor whose header entry does not fit its dtype, shape or place, described.
fn entry_problem(bytes: &[u8]) -> Option<String> {
    let (json, data_len) = header(bytes)?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(json).ok()?;
    let mut entries: Vec<(String, Dtype, Vec<u64>, [u64; 2])> = header
        .into_iter()
        .filter(|(k, _)| k != "__metadata__")
        .filter_map(|(k, v)| {
            let dtype: Dtype = serde_json::from_value(v.get("dtype")?.clone()).ok()?;
            let shape: Vec<u64> = serde_json::from_value(v.get("shape")?.clone()).ok()?;
            let offsets: [u64; 2] = serde_json::from_value(v.get("data_offsets")?.clone()).ok()?;
            Some((k, dtype, shape, offsets))
        })
        .collect();
    entries.sort_by_key(|e| e.3);
    let mut end = 0;
    for (name, dtype, shape, [a, b]) in entries {
        let bits = shape.iter().try_fold(dtype.bitsize() as u64, |acc, &d| acc.checked_mul(d));
        if a > b || b > data_len {
            return Some(format!("tensor `{name}` has data offsets [{a}, {b}] outside the {data_len} data bytes"));
        }
        if a != end {
            return Some(format!("tensor `{name}` starts at byte {a} of the data, not at {end}: offsets overlap or leave a gap"));
        }
        if bits.map(|bits| bits.div_ceil(8)) != Some(b - a) {
            return Some(format!("tensor `{name}` is {dtype:?} {shape:?} but holds {} bytes", b - a));
        }
        end = b;
    }
    None
}

fn describe(e: safetensors::SafeTensorError, bytes: &[u8]) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::InvalidOffset(_) | E::TensorInvalidInfo | E::ValidationOverflow => {
            entry_problem(bytes).unwrap_or_else(|| format!("{e} (corrupt header)"))
        }
        E::MetadataIncompleteBuffer => match data_lengths(bytes) {
            Some((declared, there)) if declared < there => {
                format!("{} bytes after the last tensor's data (the header declares {declared} data bytes): corrupt file", there - declared)
            }
            Some((declared, there)) => {
                format!("tensor data is shorter than the header says (truncated file: {there} of {declared} data bytes)")
            }
            None => "tensor data is shorter than the header says (truncated file)".into(),
        },
        E::HeaderTooSmall => "file too small to hold a safetensors header (truncated?)".into(),
        E::HeaderTooLarge => "header length is larger than allowed (corrupt file?)".into(),
        E::InvalidHeaderLength => "header length runs past the end of the file (truncated or corrupt)".into(),
        E::InvalidHeader(_) | E::InvalidHeaderStart | E::InvalidHeaderDeserialization(_) => {
            format!("header is not valid safetensors JSON ({e})")
        }
        other => format!("{other}"),
    }
}

fn to_f32(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    let err = || Error::Dtype { name: name.into(), dtype: format!("{dtype:?}") };
    Ok(match dtype {
        Dtype::F32 => f32_from_le(bytes),
        Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        _ => return Err(err()),
    })
}

/// Little-endian f32s as one bulk copy: a browser worker loads the weights on baseline-compiled
/// wasm (V8's Liftoff), where an element-by-element conversion of 2 MB took tens of ms.
fn f32_from_le(bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; bytes.len() / 4];
    let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut out);
    dst.copy_from_slice(&bytes[..dst.len()]);
    if cfg!(target_endian = "big") {
        out.iter_mut().for_each(|v| *v = f32::from_bits(u32::from_le(v.to_bits())));
    }
    out
}

/// The index of the first NaN or ±inf (every exponent bit set). Each block of 64 is tested with
/// a reduction that has no early exit, which LLVM vectorises (simd128 in wasm: a cheap pass also on
/// baseline-compiled code); only a block with a hit is searched element by element. Not inlined:
/// V8 compiles a function with optimising code once its loops have run long enough, which for
/// this loop inside `Model::from_bytes` meant a ~180 ms compile of a function that runs once.
#[inline(never)]
fn first_non_finite(data: &[f32]) -> Option<usize> {
    const EXP: u32 = 0x7f80_0000;
    let bad = |v: &f32| v.to_bits() & EXP == EXP;
    data.chunks(64).enumerate().find_map(|(b, chunk)| {
        let hit = chunk.iter().fold(false, |acc, v| acc | bad(v));
        hit.then(|| b * 64 + chunk.iter().position(bad).unwrap_or(0))
    })
}

/// diffusers' `_convert_deprecated_attention_blocks`: old checkpoints (google/ddpm-*) name the
/// attention projections `query`, `key`, `value`, `proj_attn`.
fn modern_name(name: &str) -> String {
    if !name.contains(".attentions.") {
        return name.to_string();
    }
    for (old, new) in [(".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0.")] {
        if name.contains(old) {
            return name.replacen(old, new, 1);
        }
    }
    name.to_string()
}

/// The shape of every tensor a UNet2DModel with this config has, by diffusers' module names.
pub fn expected_shapes(cfg: &UNetConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let ch = &cfg.block_out_channels;
    let t = cfg.time_embed_dim;
    conv(&mut out, "conv_in", ch[0], cfg.in_channels, 3);
    let t_in = match cfg.time_embedding {
        TimeEmbedding::Positional => ch[0],
        TimeEmbedding::Fourier => {
            out.push(("time_proj.weight".into(), vec![ch[0]]));
            2 * ch[0]
        }
        TimeEmbedding::Learned { num_train_timesteps } => {
            out.push(("time_proj.weight".into(), vec![num_train_timesteps, ch[0]]));
            ch[0]
        }
    };
    vec_pair(&mut out, "time_embedding.linear_1", t, t_in);
    vec_pair(&mut out, "time_embedding.linear_2", t, t);
    match (cfg.class_embedding, cfg.num_class_embeds) {
        (Some(ClassEmbedding::Table), Some(n)) => out.push(("class_embedding.weight".into(), vec![n, t])),
        (Some(ClassEmbedding::Timestep), _) => {
            vec_pair(&mut out, "class_embedding.linear_1", t, t_in);
            vec_pair(&mut out, "class_embedding.linear_2", t, t);
        }
        _ => {}
    }
    for block in cfg.down_blocks() {
        for (r, a) in block.resnets.iter().zip(&block.attentions) {
            resnet_shapes(&mut out, r, t);
            if let Some(a) = a {
                attention_shapes(&mut out, a);
            }
        }
        match &block.sampler {
            None => {}
            Some(Downsampler::Conv { prefix, .. }) => {
                let c = block.resnets[0].c_out;
                conv(&mut out, prefix, c, c, 3);
            }
            Some(Downsampler::Resnet(r)) => resnet_shapes(&mut out, r, t),
            Some(Downsampler::Skip { resnet, skip_conv }) => {
                resnet_shapes(&mut out, resnet, t);
                conv(&mut out, skip_conv, resnet.c_out, 3, 1);
            }
        }
    }
    if let Some(mid) = cfg.mid() {
        resnet_shapes(&mut out, &mid.resnets[0], t);
        if let Some(a) = &mid.attention {
            attention_shapes(&mut out, a);
        }
        resnet_shapes(&mut out, &mid.resnets[1], t);
    }
    for block in cfg.up_blocks() {
        for (r, a) in block.resnets.iter().zip(&block.attentions) {
            resnet_shapes(&mut out, r, t);
            if let Some(a) = a {
                attention_shapes(&mut out, a);
            }
        }
        match &block.sampler {
            None => {}
            Some(Upsampler::Conv { prefix }) => {
                let c = block.resnets[0].c_out;
                conv(&mut out, prefix, c, c, 3);
            }
            Some(Upsampler::Resnet(r)) => resnet_shapes(&mut out, r, t),
            Some(Upsampler::Skip { resnet, skip_norm, skip_conv, .. }) => {
                out.push((format!("{skip_norm}.weight"), vec![resnet.c_out]));
                out.push((format!("{skip_norm}.bias"), vec![resnet.c_out]));
                conv(&mut out, skip_conv, 3, resnet.c_out, 3);
                resnet_shapes(&mut out, resnet, t);
            }
        }
    }
    out.push(("conv_norm_out.weight".into(), vec![ch[0]]));
    out.push(("conv_norm_out.bias".into(), vec![ch[0]]));
    conv(&mut out, "conv_out", cfg.out_channels, ch[0], 3);
    out
}

fn conv(out: &mut Vec<(String, Vec<usize>)>, name: &str, o: usize, i: usize, k: usize) {
    out.push((format!("{name}.weight"), vec![o, i, k, k]));
    out.push((format!("{name}.bias"), vec![o]));
}

/// Channel bookkeeping of one up block, as `UNet2DModel.__init__` and `UpBlock2D` compute it.
pub struct UpChannels {
    pub out: usize,
    /// (channels coming from below, skip channels concatenated) for each resnet.
    pub resnet_inputs: Vec<(usize, usize)>,
}

pub fn up_block_channels(cfg: &UNetConfig) -> Vec<UpChannels> {
    let rev: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
    let n = rev.len();
    let mut output = rev[0];
    (0..n)
        .map(|i| {
            let prev_output = output;
            output = rev[i];
            let input = rev[(i + 1).min(n - 1)];
            let layers = cfg.layers_per_block + 1;
            let resnet_inputs = (0..layers)
                .map(|j| {
                    let skip = if j == layers - 1 { input } else { output };
                    let from_below = if j == 0 { prev_output } else { output };
                    (from_below, skip)
                })
                .collect();
            UpChannels { out: output, resnet_inputs }
        })
        .collect()
}

fn vec_pair(out: &mut Vec<(String, Vec<usize>)>, name: &str, o: usize, i: usize) {
    out.push((format!("{name}.weight"), vec![o, i]));
    out.push((format!("{name}.bias"), vec![o]));
}

fn resnet_shapes(out: &mut Vec<(String, Vec<usize>)>, r: &ResnetSpec, t: usize) {
    let (p, c_in, c_out) = (&r.prefix, r.c_in, r.c_out);
    out.push((format!("{p}.norm1.weight"), vec![c_in]));
    out.push((format!("{p}.norm1.bias"), vec![c_in]));
    conv(out, &format!("{p}.conv1"), c_out, c_in, 3);
    // scale_shift: the projection gives a scale and a shift per channel.
    vec_pair(out, &format!("{p}.time_emb_proj"), if r.scale_shift { 2 * c_out } else { c_out }, t);
    out.push((format!("{p}.norm2.weight"), vec![c_out]));
    out.push((format!("{p}.norm2.bias"), vec![c_out]));
    conv(out, &format!("{p}.conv2"), c_out, c_out, 3);
    if r.shortcut {
        conv(out, &format!("{p}.conv_shortcut"), c_out, c_in, 1);
    }
}

fn attention_shapes(out: &mut Vec<(String, Vec<usize>)>, a: &AttentionSpec) {
    let (p, c) = (&a.prefix, a.channels);
    let inner = a.heads * a.dim_head;
    if a.groups.is_some() {
        out.push((format!("{p}.group_norm.weight"), vec![c]));
        out.push((format!("{p}.group_norm.bias"), vec![c]));
    }
    for proj in ["to_q", "to_k", "to_v"] {
        vec_pair(out, &format!("{p}.{proj}"), inner, c);
    }
    vec_pair(out, &format!("{p}.to_out.0"), c, inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_non_finite_finds_the_first_across_blocks() {
        let mut v = vec![1.5f32; 200];
        assert_eq!(first_non_finite(&v), None);
        for (at, bad) in [(0, f32::NAN), (63, f32::INFINITY), (64, f32::NEG_INFINITY), (130, f32::NAN), (199, f32::NAN)] {
            let mut w = v.clone();
            w[at] = bad;
            w[199] = f32::NAN; // a later hit must not win
            assert_eq!(first_non_finite(&w), Some(at), "{bad} at {at}");
        }
        v[5] = f32::MAX; // finite extremes are not flagged
        v[6] = f32::MIN_POSITIVE / 2.0;
        assert_eq!(first_non_finite(&v), None);
    }

    #[test]
    fn f32_from_le_reads_every_value() {
        let vals = [0.0f32, -1.25, 3.0e-39, f32::MAX, 7.5];
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(f32_from_le(&bytes), vals);
        assert_eq!(f32_from_le(&bytes[1..]).len(), 4, "a partial value is not read");
    }

    #[test]
    fn header_only_weights_match_the_full_read_but_hold_no_data() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/mnist-cond");
        let cfg = UNetConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        let bytes = std::fs::read(dir.join("diffusion_pytorch_model.safetensors")).unwrap();
        let full = Weights::from_safetensors(&bytes, "w", &cfg).unwrap();
        let head = Weights::from_safetensors_header(&bytes, "w", &cfg).unwrap();
        assert!(full.has_data() && !head.has_data());
        assert_eq!(head.parameter_count(), full.parameter_count());
        assert_eq!(head.stored_dtype, full.stored_dtype);
        for (name, t) in &full.tensors {
            assert_eq!(head.tensors[name].shape, t.shape, "{name}");
            assert!(head.tensors[name].data.is_empty(), "{name}");
        }
        // The header's checks still run: a truncated file is refused.
        assert!(Weights::from_safetensors_header(&bytes[..bytes.len() - 1], "w", &cfg).is_err());
    }
}
