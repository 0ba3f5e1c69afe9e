//! The CLI's files: safetensors tensors, PNG images and masks, scheduler configs, noise files.

use std::path::Path;

use ddim_webgpu::run::GivenNoise;
use ddim_webgpu::sampler::SchedulerConfig;
use ddim_webgpu::{Error, Model, Result, Tensor};
use safetensors::{Dtype, SafeTensors};

pub fn io_err(p: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io { path: p.display().to_string(), msg: e.to_string() }
}

pub fn read_tensors(path: &Path) -> Result<(Vec<u8>, String)> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    Ok((bytes, path.display().to_string()))
}

/// Reads tensor `name` of `st` as f32 (F32/F16/BF16/I64/I32 accepted).
pub fn get_f32(st: &SafeTensors, file: &str, name: &str) -> Result<Option<Tensor>> {
    let view = match st.tensor(name) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    let b = view.data();
    let data: Vec<f32> = match view.dtype() {
        Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        Dtype::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        d => return Err(Error::Input(format!("{file}: tensor `{name}` has unsupported dtype {d:?}"))),
    };
    Ok(Some(Tensor::new(view.shape().to_vec(), data)?))
}

pub fn write_tensors(path: &Path, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> =
        tensors.iter().map(|(n, t)| (n.to_string(), bytemuck::cast_slice(&t.data).to_vec(), t.shape.clone())).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, b, s)| (n.clone(), safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).expect("sizes match")))
        .collect();
    let out = safetensors::serialize(views, None).map_err(|e| io_err(path, e))?;
    std::fs::write(path, out).map_err(|e| io_err(path, e))
}

pub fn read_scheduler(p: &Path) -> Result<SchedulerConfig> {
    SchedulerConfig::load(&String::from_utf8_lossy(&std::fs::read(p).map_err(|e| io_err(p, e))?))
}

/// `noise` [N,C,H,W] and, if present, `step_noise` [S,N,C,H,W] from a safetensors file.
pub fn read_noise(p: &Path) -> Result<GivenNoise> {
    let (bytes, file) = read_tensors(p)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors { file: file.clone(), msg: e.to_string() })?;
    let x_t = get_f32(&st, &file, "noise")?.ok_or_else(|| Error::Input(format!("{file}: no tensor `noise`")))?;
    Ok(GivenNoise { x_t, per_step: get_f32(&st, &file, "step_noise")?, undo: get_f32(&st, &file, "undo_noise")? })
}

pub fn save_png(path: &Path, x: &Tensor) -> Result<()> {
    let (w, h, px) = ddim_webgpu::image_grid::grid_rgba(x, ddim_webgpu::image_grid::grid_cols(x.shape[0]));
    image::save_buffer(path, &px, w as u32, h as u32, image::ExtendedColorType::Rgba8).map_err(|e| io_err(path, e))
}

/// x_T of one image: the first item of seed S's x_T, or the first of a safetensors `noise` (or `sample`).
pub fn read_latent(spec: &str, model: &Model) -> Result<Tensor> {
    let (h, w) = model.config.sample_size.unwrap_or((32, 32));
    let c = model.config.in_channels;
    if let Ok(seed) = spec.parse::<u64>() {
        return Tensor::new(vec![1, c, h, w], ddim_webgpu::sampler::rng::normal(seed, 0, c * h * w));
    }
    let path = Path::new(spec);
    if !path.exists() {
        return Err(Error::Input(format!("{spec:?}: neither a seed (a whole number) nor an existing x_T file")));
    }
    let (bytes, file) = read_tensors(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors { file: file.clone(), msg: e.to_string() })?;
    let t = match get_f32(&st, &file, "noise")? {
        Some(t) => t,
        None => get_f32(&st, &file, "sample")?.ok_or_else(|| Error::Input(format!("{file}: no tensor `noise` or `sample`")))?,
    };
    match t.shape[..] {
        [_, tc, th, tw] if tc == c => Tensor::new(vec![1, c, th, tw], t.data[..c * th * tw].to_vec()),
        _ => Err(Error::Input(format!("{file}: x_T is {:?}, the model needs [N, {c}, H, W]", t.shape))),
    }
}

/// An image for the model: a PNG (grey for 1 channel, RGB for 3; resized to the model's
/// sample_size) as [1, C, H, W] in −1 … 1, or a safetensors `sample` [N, C, H, W] as is.
pub fn read_image(path: &Path, model: &Model) -> Result<Tensor> {
    read_picture(path, model, false)
}

/// A RePaint mask: a PNG's grey ≥ 0.5 keeps (1), darker is filled (0); or a safetensors `sample`.
pub fn read_mask(path: &Path, model: &Model) -> Result<Tensor> {
    read_picture(path, model, true)
}

/// The most pixels a PNG input may have (8192 × 8192): far beyond any model's sample size.
const MAX_PNG_PIXELS: u64 = 1 << 26;

pub fn read_picture(path: &Path, model: &Model, mask: bool) -> Result<Tensor> {
    let is_png = std::fs::read(path).map_err(|e| io_err(path, e))?.starts_with(b"\x89PNG");
    if !is_png {
        let (bytes, file) = read_tensors(path)?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::Safetensors { file: file.clone(), msg: format!("{e} (expected a PNG or a safetensors file)") })?;
        let t = get_f32(&st, &file, "sample")?.ok_or_else(|| Error::Input(format!("{file}: no tensor `sample`")))?;
        return match t.shape.len() {
            3 => Tensor::new([&[1][..], &t.shape[..]].concat(), t.data),
            4 => Ok(t),
            _ => Err(Error::Input(format!("{file}: `sample` is {:?}, expected [N, C, H, W]", t.shape))),
        };
    }
    // The header's size first: a decompression bomb (a huge size over a few bytes) is refused with
    // its numbers before anything is allocated.
    let reader = image::ImageReader::open(path).map_err(|e| io_err(path, e))?;
    let (iw, ih) = reader.into_dimensions().map_err(|e| io_err(path, e))?;
    if iw as u64 * ih as u64 > MAX_PNG_PIXELS {
        return Err(io_err(path, format!("a {iw}x{ih} PNG: larger than the {MAX_PNG_PIXELS} pixels this tool reads (resize it first)")));
    }
    let img = image::open(path).map_err(|e| io_err(path, e))?;
    let (h, w) = model.config.sample_size.unwrap_or((img.height() as usize, img.width() as usize));
    if (img.width() as usize, img.height() as usize) != (w, h) {
        eprintln!("{}: {}x{} resized to the model's {w}x{h}", path.display(), img.width(), img.height());
    }
    let img = img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
    let c = if mask { 1 } else { model.config.in_channels };
    let planes: Vec<Vec<f32>> = match c {
        1 => vec![img.to_luma8().pixels().map(|p| p.0[0] as f32 / 255.0).collect()],
        3 => {
            let rgb = img.to_rgb8();
            (0..3).map(|ch| rgb.pixels().map(|p| p.0[ch] as f32 / 255.0).collect()).collect()
        }
        _ => {
            return Err(Error::Input(format!("a PNG gives 1 or 3 channels; this model has in_channels = {c}: give a safetensors `sample`")))
        }
    };
    let data = planes.concat().into_iter().map(|v| if mask { (v >= 0.5) as u8 as f32 } else { v * 2.0 - 1.0 }).collect();
    Tensor::new(vec![1, c, h, w], data)
}
