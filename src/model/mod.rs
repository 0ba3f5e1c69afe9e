//! The model: config, weights, and the U-Net forward written once over any `UNetOps`.

pub mod blocks;
pub mod config;
pub mod memory;
pub mod unet;
pub mod weights;

pub use config::UNetConfig;
pub use unet::{unet_forward, ConvArgs, ConvSpec, GroupNorm, UNetOps};
pub use weights::Weights;

#[cfg(not(target_arch = "wasm32"))]
use crate::error::Error;
use crate::error::Result;
use crate::sampler::SchedulerConfig;

/// A loaded diffusers UNet2DModel folder: config, weights and the scheduler config (parsed once,
/// at load; diffusers' defaults when the folder has none).
#[derive(Clone, Debug)]
pub struct Model {
    pub config: UNetConfig,
    pub weights: Weights,
    pub scheduler: SchedulerConfig,
    /// Where `scheduler` came from: a file name, or why the defaults are used.
    pub scheduler_source: String,
}

/// Said of a model (a folder or a Hub repo) whose weights are only a PyTorch pickle.
pub const PICKLE_ONLY: &str = "only PyTorch pickle weights (diffusion_pytorch_model.bin), which this loader does not read (a \
                               pickle can run code): convert them to safetensors, e.g. \
                               UNet2DModel.from_pretrained(folder).save_pretrained(out, safe_serialization=True)";

/// Said when a model folder has no `scheduler_config.json`.
pub const SCHEDULER_DEFAULTS: &str = "diffusers' DDIMScheduler defaults (no scheduler_config.json)";

impl Model {
    /// Builds a model from the bytes of `config.json`, the safetensors file and, when the folder
    /// has one, `scheduler_config.json`.
    pub fn from_bytes(config_json: &str, safetensors: &[u8], scheduler_json: Option<&str>) -> Result<Self> {
        let config = UNetConfig::from_json(config_json)?;
        let weights = Weights::from_safetensors(safetensors, "diffusion_pytorch_model.safetensors", &config)?;
        let (scheduler, scheduler_source) = parse_scheduler(scheduler_json, "scheduler_config.json")?;
        Ok(Model { config, weights, scheduler, scheduler_source })
    }

    /// Like `from_bytes`, with the weights' data left empty (`Weights::from_safetensors_header`):
    /// every check but the data's (NaN, Inf) is made, and the model can plan runs but not compute.
    pub fn without_weight_data(config_json: &str, safetensors: &[u8], scheduler_json: Option<&str>) -> Result<Self> {
        let config = UNetConfig::from_json(config_json)?;
        let weights = Weights::from_safetensors_header(safetensors, "diffusion_pytorch_model.safetensors", &config)?;
        let (scheduler, scheduler_source) = parse_scheduler(scheduler_json, "scheduler_config.json")?;
        Ok(Model { config, weights, scheduler, scheduler_source })
    }

    /// A model of `config_json`'s shape with seeded random weights (N(0, 1/fan_in) matrices, unit
    /// norm scales, zero biases): for benchmarks of shapes no checkpoint here has.
    pub fn random(config_json: &str, seed: u64) -> Result<Self> {
        let config = UNetConfig::from_json(config_json)?;
        let tensors = weights::expected_shapes(&config)
            .into_iter()
            .enumerate()
            .map(|(i, (name, shape))| {
                let count: usize = shape.iter().product();
                let data = match shape.len() {
                    1 if name.contains("norm") && name.ends_with(".weight") => vec![1.0; count],
                    1 => vec![0.0; count],
                    _ => {
                        let scale = 1.0 / (shape[1..].iter().product::<usize>() as f32).sqrt();
                        crate::sampler::rng::normal(seed, 1000 + i as u64, count).into_iter().map(|v| v * scale).collect()
                    }
                };
                (name, crate::Tensor { shape, data })
            })
            .collect();
        let weights = Weights::from_tensors(tensors, &config)?;
        Ok(Model { config, weights, scheduler: SchedulerConfig::default(), scheduler_source: SCHEDULER_DEFAULTS.into() })
    }

    /// Loads a diffusers folder: `config.json`, `diffusion_pytorch_model.safetensors` (or the one
    /// `*.safetensors` there), optional `scheduler_config.json` here or in `../scheduler/`. A
    /// pipeline folder (`model_index.json`, as pipelines are published) loads its `unet/` with its
    /// `scheduler/`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path) -> Result<Self> {
        let index = dir.join("model_index.json");
        if index.exists() {
            return Self::load_dir(&pipeline_unet(dir, &index)?);
        }
        let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| Error::Io { path: p.display().to_string(), msg: e.to_string() });
        let cfg_path = dir.join("config.json");
        let config_text = String::from_utf8(read(&cfg_path)?).map_err(|_| Error::Config("config.json is not UTF-8".into()))?;
        let config = UNetConfig::from_json(&config_text)?;
        let st_path = find_safetensors(dir)?;
        let bytes = read(&st_path)?;
        let weights = Weights::from_safetensors(&bytes, &st_path.display().to_string(), &config)?;
        let sched_path =
            [dir.join("scheduler_config.json"), dir.join("../scheduler/scheduler_config.json")].into_iter().find(|p| p.exists());
        let text = sched_path.as_ref().map(|p| read(p).map(|b| String::from_utf8_lossy(&b).into_owned())).transpose()?;
        let name = sched_path.map(|p| p.display().to_string()).unwrap_or_default();
        let (scheduler, scheduler_source) = parse_scheduler(text.as_deref(), &name)?;
        Ok(Model { config, weights, scheduler, scheduler_source })
    }
}

fn parse_scheduler(text: Option<&str>, name: &str) -> Result<(SchedulerConfig, String)> {
    match text {
        Some(t) => Ok((SchedulerConfig::load(t)?, name.to_string())),
        None => Ok((SchedulerConfig::default(), SCHEDULER_DEFAULTS.to_string())),
    }
}

/// The `unet/` of a diffusers pipeline folder whose `model_index.json` is `index`.
#[cfg(not(target_arch = "wasm32"))]
fn pipeline_unet(dir: &std::path::Path, index: &std::path::Path) -> Result<std::path::PathBuf> {
    let io = |msg: String| Error::Io { path: index.display().to_string(), msg };
    let text = std::fs::read_to_string(index).map_err(|e| io(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| io(format!("not JSON: {e}")))?;
    let unet = dir.join("unet");
    match value.get("unet") {
        None => Err(io("a pipeline without a `unet` entry: this engine runs a pipeline's UNet2DModel".into())),
        Some(_) if !unet.is_dir() => Err(io(format!("the pipeline names a `unet`, but {} is not a folder", unet.display()))),
        Some(_) => Ok(unet),
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn find_safetensors(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let preferred = dir.join("diffusion_pytorch_model.safetensors");
    if preferred.exists() {
        return Ok(preferred);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Io { path: dir.display().to_string(), msg: e.to_string() })?;
    let mut found: Vec<_> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "safetensors")).collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 if dir.join("diffusion_pytorch_model.bin").exists() => {
            Err(Error::Io { path: dir.display().to_string(), msg: PICKLE_ONLY.into() })
        }
        0 => Err(Error::Io { path: dir.display().to_string(), msg: "no *.safetensors weights in this folder".into() }),
        _ => Err(Error::Io {
            path: dir.display().to_string(),
            msg: "several *.safetensors files and no diffusion_pytorch_model.safetensors".into(),
        }),
    }
}
