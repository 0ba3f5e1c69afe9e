//! The model: config, weights, and the U-Net forward written once over any `Backend`.

pub mod config;
pub mod unet;
pub mod weights;

pub use config::UNetConfig;
pub use unet::{unet_forward, Backend, ConvSpec};
pub use weights::Weights;

#[cfg(not(target_arch = "wasm32"))]
use crate::error::Error;
use crate::error::Result;

/// A loaded diffusers UNet2DModel folder: config + weights (+ scheduler config text if present).
#[derive(Clone, Debug)]
pub struct Model {
    pub config: UNetConfig,
    pub weights: Weights,
    pub scheduler_config: Option<String>,
}

impl Model {
    /// Builds a model from the bytes of `config.json` and the safetensors file.
    pub fn from_bytes(config_json: &str, safetensors: &[u8], scheduler_config: Option<String>) -> Result<Self> {
        let config = UNetConfig::from_json(config_json)?;
        let weights = Weights::from_safetensors(safetensors, "diffusion_pytorch_model.safetensors", &config)?;
        Ok(Model { config, weights, scheduler_config })
    }

    /// Loads a diffusers folder: `config.json`, `diffusion_pytorch_model.safetensors` (or the one
    /// `*.safetensors` there), optional `scheduler_config.json` here or in `../scheduler/`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path) -> Result<Self> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| Error::Io { path: p.display().to_string(), msg: e.to_string() })
        };
        let cfg_path = dir.join("config.json");
        let config_text = String::from_utf8(read(&cfg_path)?)
            .map_err(|_| Error::Config("config.json is not UTF-8".into()))?;
        let config = UNetConfig::from_json(&config_text)?;
        let st_path = find_safetensors(dir)?;
        let bytes = read(&st_path)?;
        let weights = Weights::from_safetensors(&bytes, &st_path.display().to_string(), &config)?;
        let scheduler_config = [dir.join("scheduler_config.json"), dir.join("../scheduler/scheduler_config.json")]
            .iter()
            .find(|p| p.exists())
            .map(|p| read(p).map(|b| String::from_utf8_lossy(&b).into_owned()))
            .transpose()?;
        Ok(Model { config, weights, scheduler_config })
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn find_safetensors(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let preferred = dir.join("diffusion_pytorch_model.safetensors");
    if preferred.exists() {
        return Ok(preferred);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Io { path: dir.display().to_string(), msg: e.to_string() })?;
    let mut found: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::Io { path: dir.display().to_string(), msg: "no *.safetensors weights in this folder".into() }),
        _ => Err(Error::Io { path: dir.display().to_string(), msg: "several *.safetensors files and no diffusion_pytorch_model.safetensors".into() }),
    }
}
