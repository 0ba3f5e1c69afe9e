//! ddim-webgpu: a diffusers `UNet2DModel` run through hand-written WGSL kernels (and a CPU
//! reference of every op), stepped by DDIM/DDPM, natively and in the browser.

pub mod classifier;
pub mod engines;
pub mod error;
#[cfg(target_arch = "wasm32")]
pub mod event_loop;
pub mod fast;
pub mod gpu;
#[cfg(all(feature = "hub", not(target_arch = "wasm32")))]
pub mod hub;
pub mod image_grid;
pub mod json;
pub mod model;
pub mod reference;
pub mod run;
pub mod sampler;
pub mod tensor;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
pub use model::{Model, UNetConfig};
pub use tensor::Tensor;
