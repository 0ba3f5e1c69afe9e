//! diffusers' schedulers for a UNet2DModel as stateful host-side objects with diffusers' surface,
//! for embedders who drive their own model on flat `f32` samples: `from_config(json)` (the class
//! by `_class_name`), `set_timesteps(n)`, `timesteps()`, `init_noise_sigma()`,
//! `scale_model_input`, `step` (keeping diffusers' state between calls: model-output history,
//! step index, PRK/PLMS counters, Heun's first/second order), `add_noise`, `order()`.
//!
//! Each class computes as diffusers does: f32 where diffusers uses torch f32 tensors, f64 where it
//! uses numpy, so diffusers' own full test loops agree to 1e-5 relative (sums; see
//! tests/scheduler_expectations.rs). Bit-exactness is out of reach only where torch's or numpy's
//! f32 transcendentals are not correctly rounded (0-dim sqrt/pow, numpy's SIMD log). Stochastic
//! steps take their noise as an argument (required exactly when the step adds noise), so a caller
//! can replay a diffusers run from the noise it drew.
//!
//! Layout: one flat sample. Where diffusers works per batch item (dynamic thresholding's
//! quantile, ScoreSdeVe's corrector norms) `set_batch_size` says how many equal items it holds.
//! Refused by name: `use_beta_sigmas` (scipy's beta quantile), flow-matching keys
//! (`use_flow_sigmas`, `use_dynamic_shifting`, `shift_terminal`), Euler's `log_linear`
//! interpolation, UniPC's `solver_p`, DDPM's `fixed_large_log` (NaN in diffusers).

mod cm;
mod config;
mod ddim;
mod ddpm;
mod deis;
mod dpm_multistep;
mod dpm_singlestep;
mod dpm_updates;
mod edm;
mod edm_dpm;
mod euler;
mod euler_ancestral;
mod heun;
mod kdpm2;
mod lms;
mod multistep;
mod pndm;
mod sde_ve;
mod sigmas;
mod unipc;
mod vp;

pub use cm::CmStochasticIterativeScheduler;
pub use config::{Cfg, NoiseSchedule, Prediction};
pub use ddim::DdimScheduler;
pub use ddpm::DdpmScheduler;
pub use deis::DeisMultistepScheduler;
pub use dpm_multistep::DpmSolverMultistepScheduler;
pub use dpm_singlestep::DpmSolverSinglestepScheduler;
pub use edm::EdmEulerScheduler;
pub use edm_dpm::EdmDpmSolverMultistepScheduler;
pub use euler::{Churn, EulerDiscreteScheduler};
pub use euler_ancestral::EulerAncestralDiscreteScheduler;
pub use heun::HeunDiscreteScheduler;
pub use kdpm2::{Kdpm2AncestralDiscreteScheduler, Kdpm2DiscreteScheduler};
pub use lms::LmsDiscreteScheduler;
pub use pndm::PndmScheduler;
pub use sde_ve::{ScoreSdeVeScheduler, SdeVeOutput};
pub use sigmas::Spacing;
pub use unipc::UniPcMultistepScheduler;

use crate::error::{Error, Result};

/// What `step` returns, as diffusers' `*SchedulerOutput`. `pred_original_sample` is empty where
/// diffusers' class returns none (PNDM; the ε-space solvers); the multistep data-prediction
/// solvers fill it with their converted x0 (diffusers returns none), ScoreSdeVe with its
/// prev_sample_mean.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutput {
    pub prev_sample: Vec<f32>,
    pub pred_original_sample: Vec<f32>,
}

/// The surface every class offers (diffusers' `SchedulerMixin` plus each class's `step`).
pub trait DiffusersScheduler: std::fmt::Debug + Send {
    /// diffusers' class name ("PNDMScheduler", ...).
    fn class_name(&self) -> &'static str;
    /// `set_timesteps(num_inference_steps)`: resets the state of any previous run.
    fn set_timesteps(&mut self, n: usize) -> Result<()>;
    /// `scheduler.timesteps`, noisiest first, the values diffusers holds: integers for the VP
    /// classes, f32 values for most σ classes (fractional), f64 where diffusers keeps float64
    /// (CM, EDM's c_noise is f32; KDPM2 with a σ ramp).
    fn timesteps(&self) -> &[f64];
    /// x_T = noise · `init_noise_sigma` (1 for the VP classes, the default).
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }
    /// `scale_model_input(sample, t)`: what the model sees (the sample itself for the VP classes,
    /// the default).
    fn scale_model_input(&mut self, sample: &[f32], _t: f64) -> Result<Vec<f32>> {
        Ok(sample.to_vec())
    }
    /// One call of diffusers' `step(model_output, t, sample)`. `noise` is the noise a stochastic
    /// step draws (`randn_tensor` in diffusers), required exactly when this call adds noise.
    fn step(&mut self, model_output: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput>;
    /// `add_noise(original_samples, noise, t)`.
    fn add_noise(&self, x0: &[f32], noise: &[f32], t: f64) -> Result<Vec<f32>>;
    /// diffusers' `order`: model evaluations per step (Heun: 2).
    fn order(&self) -> usize;
    /// `set_begin_index(i)` (img2img pipelines) for the classes that keep a step index.
    fn set_begin_index(&mut self, _begin: usize) -> Result<()> {
        Err(Error::Scheduler(format!("{} has no set_begin_index", self.class_name())))
    }
    /// The flat sample holds `batch` equal items (diffusers' dynamic thresholding takes its
    /// quantile per item); 1 unless set. Classes without thresholding ignore it.
    fn set_batch_size(&mut self, batch: usize) -> Result<()> {
        checked_batch(batch).map(|_| ())
    }
}

fn checked_batch(batch: usize) -> Result<usize> {
    if batch == 0 {
        return Err(Error::Input("batch size 0: need at least 1".into()));
    }
    Ok(batch)
}

/// The classes `from_config` builds.
pub const CLASSES: &[&str] = &[
    "PNDMScheduler",
    "LMSDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler",
    "HeunDiscreteScheduler",
    "DDIMScheduler",
    "DDPMScheduler",
    "DPMSolverMultistepScheduler",
    "UniPCMultistepScheduler",
    "DEISMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "ScoreSdeVeScheduler",
    "CMStochasticIterativeScheduler",
    "EDMEulerScheduler",
    "EDMDPMSolverMultistepScheduler",
];

/// Other diffusers scheduler classes, named as such in the error (not implemented here).
const NOT_YET: &[&str] = &[
    "DPMSolverSDEScheduler",
    "IPNDMScheduler",
    "LCMScheduler",
    "TCDScheduler",
    "SASolverScheduler",
    "DDIMInverseScheduler",
    "DPMSolverMultistepInverseScheduler",
    "DDIMParallelScheduler",
    "DDPMParallelScheduler",
    "RePaintScheduler",
    "UnCLIPScheduler",
    "FlowMatchEulerDiscreteScheduler",
];

/// The scheduler of a diffusers `scheduler_config.json`, by its `_class_name`.
pub fn from_config(json: &str) -> Result<Box<dyn DiffusersScheduler>> {
    let cfg = Cfg::parse(json)?;
    let class = cfg.class_name().ok_or_else(|| {
        Error::Config(format!("scheduler config: no `_class_name`: say which class to build (one of {})", CLASSES.join(", ")))
    })?;
    Ok(match class {
        "PNDMScheduler" => Box::new(PndmScheduler::new(&cfg)?),
        "LMSDiscreteScheduler" => Box::new(LmsDiscreteScheduler::new(&cfg)?),
        "EulerAncestralDiscreteScheduler" => Box::new(EulerAncestralDiscreteScheduler::new(&cfg)?),
        "EulerDiscreteScheduler" => Box::new(EulerDiscreteScheduler::new(&cfg)?),
        "HeunDiscreteScheduler" => Box::new(HeunDiscreteScheduler::new(&cfg)?),
        "DDIMScheduler" => Box::new(DdimScheduler::new(&cfg)?),
        "DDPMScheduler" => Box::new(DdpmScheduler::new(&cfg)?),
        "DPMSolverMultistepScheduler" => Box::new(DpmSolverMultistepScheduler::new(&cfg)?),
        "UniPCMultistepScheduler" => Box::new(UniPcMultistepScheduler::new(&cfg)?),
        "DEISMultistepScheduler" => Box::new(DeisMultistepScheduler::new(&cfg)?),
        "DPMSolverSinglestepScheduler" => Box::new(DpmSolverSinglestepScheduler::new(&cfg)?),
        "KDPM2DiscreteScheduler" => Box::new(Kdpm2DiscreteScheduler::new(&cfg)?),
        "KDPM2AncestralDiscreteScheduler" => Box::new(Kdpm2AncestralDiscreteScheduler::new(&cfg)?),
        "ScoreSdeVeScheduler" => Box::new(ScoreSdeVeScheduler::new(&cfg)?),
        "CMStochasticIterativeScheduler" => Box::new(CmStochasticIterativeScheduler::new(&cfg)?),
        "EDMEulerScheduler" => Box::new(EdmEulerScheduler::new(&cfg)?),
        "EDMDPMSolverMultistepScheduler" => Box::new(EdmDpmSolverMultistepScheduler::new(&cfg)?),
        other => {
            let why = if NOT_YET.contains(&other) {
                "is a diffusers class not implemented here"
            } else {
                "is not a scheduler class this module knows"
            };
            return Err(Error::Config(format!("scheduler config: `_class_name` = {other:?} {why} (implemented: {})", CLASSES.join(", "))));
        }
    })
}

/// A VP class's integer timestep from the caller's f64.
fn integer_timestep(t: f64, class: &str) -> Result<i64> {
    if t.fract() != 0.0 || !t.is_finite() {
        return Err(Error::Scheduler(format!("{class}: timestep {t} is not an integer")));
    }
    Ok(t as i64)
}
