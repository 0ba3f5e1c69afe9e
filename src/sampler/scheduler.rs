//! The scheduler in diffusers' terms, on host arrays, for embedders who drive their own model:
//! `from_config(json)`, `set_timesteps(n)`, `timesteps()`, `step(...)`, `add_noise(...)`.
//! It is the same `Schedule` and step rule the engines use (one fused update per step).

use super::kind::SamplerKind;
use super::schedule::{Schedule, SchedulerConfig, Step};
use crate::error::{Error, Result};

/// `DDIMScheduler` (or `DDPMScheduler`, by `_class_name`) with diffusers' semantics.
#[derive(Clone, Debug)]
pub struct Scheduler {
    pub schedule: Schedule,
    pub kind: SamplerKind,
    /// DDIM's η (0 = deterministic DDIM); ignored by DDPM.
    pub eta: f32,
    steps: Vec<Step>,
}

/// What `step` returns, as diffusers' `DDIMSchedulerOutput`.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerOutput {
    pub prev_sample: Vec<f32>,
    pub pred_original_sample: Vec<f32>,
}

impl Scheduler {
    /// From `scheduler_config.json`: DDPM when `_class_name` is "DDPMScheduler", DDIM when it is
    /// "DDIMScheduler" or absent; any other class is an error naming it (this host API steps DDIM
    /// and DDPM only).
    pub fn from_config(json: &str) -> Result<Self> {
        let config = SchedulerConfig::from_json(json)?;
        let kind = match config.class_name.as_deref() {
            Some("DDPMScheduler") => SamplerKind::Ddpm,
            Some("DDIMScheduler") | None => SamplerKind::Ddim,
            Some(other) => {
                return Err(Error::Config(format!(
                    "unknown scheduler class for sampler::Scheduler: _class_name {other:?} (it implements DDIMScheduler and DDPMScheduler)"
                )))
            }
        };
        Ok(Self::new(config, kind))
    }

    pub fn new(config: SchedulerConfig, kind: SamplerKind) -> Self {
        Scheduler { schedule: Schedule::new(config), kind, eta: 0.0, steps: Vec::new() }
    }

    /// Sets η for the DDIM steps computed by the next `set_timesteps`.
    pub fn with_eta(mut self, eta: f32) -> Self {
        self.eta = eta;
        self
    }

    /// `set_timesteps(num_inference_steps)`.
    pub fn set_timesteps(&mut self, n: usize) -> Result<()> {
        self.steps = self.schedule.steps(self.kind, n, self.eta)?;
        Ok(())
    }

    /// The timesteps set by `set_timesteps`, noisiest first (empty before it is called).
    pub fn timesteps(&self) -> Vec<i64> {
        self.steps.iter().map(|s| s.timestep).collect()
    }

    /// The precomputed steps (timestep and update coefficients), noisiest first.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// One reverse step from `sample` at timestep `t` given the model's output there. `noise` is
    /// the variance noise; it is required exactly when this step adds noise (DDPM at t > 0, DDIM
    /// with η > 0), and refused otherwise only if its length is wrong.
    pub fn step(&self, model_output: &[f32], t: i64, sample: &[f32], noise: Option<&[f32]>) -> Result<SchedulerOutput> {
        let step = self.steps.iter().find(|s| s.timestep == t).ok_or_else(|| {
            Error::Scheduler(format!("timestep {t} is not one of the timesteps set by set_timesteps ({:?})", self.timesteps()))
        })?;
        let n = sample.len();
        if model_output.len() != n {
            return Err(Error::Input(format!("model_output has {} values, sample has {n}", model_output.len())));
        }
        let noise = match (noise, step.coeffs.c_noise != 0.0) {
            (Some(z), _) if z.len() != n => return Err(Error::Input(format!("noise has {} values, sample has {n}", z.len()))),
            (Some(z), _) => z,
            (None, false) => &[][..],
            (None, true) => return Err(Error::Input(format!("the step at t = {t} adds noise (DDPM, or DDIM with eta > 0): pass it"))),
        };
        let mut out = SchedulerOutput { prev_sample: vec![0.0; n], pred_original_sample: vec![0.0; n] };
        for i in 0..n {
            let z = noise.get(i).copied().unwrap_or(0.0);
            (out.prev_sample[i], out.pred_original_sample[i], _) = step.coeffs.apply(sample[i], model_output[i], z, 0.0);
        }
        Ok(out)
    }

    /// `add_noise(original_samples, noise, t)` = √ᾱ_t·x0 + √(1−ᾱ_t)·noise (f32, as diffusers).
    pub fn add_noise(&self, x0: &[f32], noise: &[f32], t: i64) -> Result<Vec<f32>> {
        self.schedule.add_noise(x0, noise, t)
    }
}

impl Schedule {
    /// √ᾱ_t·x0 + √(1−ᾱ_t)·noise, computed in f32 like diffusers' `add_noise`.
    pub fn add_noise(&self, x0: &[f32], noise: &[f32], t: i64) -> Result<Vec<f32>> {
        let a = *usize::try_from(t)
            .ok()
            .and_then(|t| self.alphas_cumprod.get(t))
            .ok_or_else(|| Error::Scheduler(format!("timestep {t} outside 0..{}", self.alphas_cumprod.len())))?;
        if x0.len() != noise.len() {
            return Err(Error::Input(format!("add_noise: {} samples and {} noise values", x0.len(), noise.len())));
        }
        let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
        Ok(x0.iter().zip(noise).map(|(x, z)| sa * x + sb * z).collect())
    }
}
