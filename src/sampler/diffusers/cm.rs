//! `CMStochasticIterativeScheduler`: multistep sampling of consistency models (Song et al. 2023,
//! Algorithm 1): each step maps x to the model's x0 estimate (with the boundary-condition
//! scalings), then re-noises it to the next σ of a Karras ramp.

use super::config::{check_len, need_noise, Cfg};
use super::sigmas::StepIndex;
use super::{DiffusersScheduler, StepOutput};
use crate::error::{Error, Result};

const CLASS: &str = "CMStochasticIterativeScheduler";

#[derive(Clone, Debug)]
pub struct CmStochasticIterativeScheduler {
    num_train_timesteps: usize,
    sigma_min: f64,
    sigma_max: f64,
    sigma_data: f64,
    s_noise: f64,
    rho: f64,
    clip_denoised: bool,
    /// σ per step and σ_min appended (f32); timesteps 250·ln σ (f64, as diffusers).
    pub sigmas: Vec<f32>,
    timesteps: Vec<f64>,
    index: StepIndex,
}

impl CmStochasticIterativeScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let num_train_timesteps = cfg.usize("num_train_timesteps", 40)?;
        if num_train_timesteps < 2 {
            return Err(Error::Scheduler(format!("`num_train_timesteps` = {num_train_timesteps}: need at least 2")));
        }
        let (sigma_min, sigma_max) = (cfg.f64("sigma_min", 0.002)?, cfg.f64("sigma_max", 80.0)?);
        if !(sigma_min > 0.0 && sigma_max > sigma_min) {
            return Err(Error::Scheduler(format!("`sigma_min` = {sigma_min}, `sigma_max` = {sigma_max}: need 0 < sigma_min < sigma_max")));
        }
        let mut s = CmStochasticIterativeScheduler {
            num_train_timesteps,
            sigma_min,
            sigma_max,
            sigma_data: cfg.f64("sigma_data", 0.5)?,
            s_noise: cfg.f64("s_noise", 1.0)?,
            rho: cfg.f64("rho", 7.0)?,
            clip_denoised: cfg.bool("clip_denoised", true)?,
            sigmas: Vec::new(),
            timesteps: Vec::new(),
            index: StepIndex::default(),
        };
        s.set_timesteps(num_train_timesteps)?;
        Ok(s)
    }

    /// `set_timesteps(timesteps=...)`: custom integer timesteps, strictly descending, below
    /// num_train_timesteps.
    pub fn set_custom_timesteps(&mut self, timesteps: &[i64]) -> Result<()> {
        if timesteps.is_empty() || timesteps.windows(2).any(|w| w[1] >= w[0]) {
            return Err(Error::Scheduler(format!("{CLASS}: custom timesteps {timesteps:?} must be non-empty and strictly descending")));
        }
        if timesteps[0] >= self.num_train_timesteps as i64 || timesteps[timesteps.len() - 1] < 0 {
            return Err(Error::Scheduler(format!("{CLASS}: custom timesteps {timesteps:?} must lie in 0..{}", self.num_train_timesteps)));
        }
        self.set_from(timesteps);
        Ok(())
    }

    /// σ = Karras ramp at t/(T − 1) (ramp ascending as the timesteps descend), timesteps 250·ln σ.
    fn set_from(&mut self, timesteps: &[i64]) {
        let t = (self.num_train_timesteps - 1) as f64;
        let (min_inv, max_inv) = (self.sigma_min.powf(1.0 / self.rho), self.sigma_max.powf(1.0 / self.rho));
        let sigmas: Vec<f64> =
            timesteps.iter().rev().map(|&v| v as f64 / t).map(|r| (max_inv + r * (min_inv - max_inv)).powf(self.rho)).collect();
        self.timesteps = sigmas.iter().map(|s| 1000.0 * 0.25 * (s + 1e-44).ln()).collect();
        self.sigmas = sigmas.iter().map(|&s| s as f32).chain([self.sigma_min as f32]).collect();
        self.index = StepIndex::default();
    }

    fn current(&mut self, t: f64) -> Result<usize> {
        self.index.checked(&self.timesteps, t, CLASS)
    }
}

impl DiffusersScheduler for CmStochasticIterativeScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let t = self.num_train_timesteps;
        if n == 0 || n > t {
            return Err(Error::Scheduler(format!("{CLASS}: {n} inference steps: must be from 1 to num_train_timesteps = {t}")));
        }
        let ratio = t / n;
        let timesteps: Vec<i64> = (0..n).rev().map(|i| (i * ratio) as i64).collect();
        self.set_from(&timesteps);
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f32 {
        self.sigma_max as f32
    }

    /// x / √(σ² + σ_data²).
    fn scale_model_input(&mut self, sample: &[f32], t: f64) -> Result<Vec<f32>> {
        let i = self.current(t)?;
        let sigma = self.sigmas[i];
        let d = (sigma * sigma + (self.sigma_data * self.sigma_data) as f32).sqrt();
        Ok(sample.iter().map(|x| x / d).collect())
    }

    /// Noise is drawn (and required) unless the run has a single timestep.
    fn step(&mut self, model_output: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
        check_len("model_output", model_output, sample.len())?;
        let i = self.current(t)?;
        let noise = need_noise(noise, self.timesteps.len() > 1, sample.len(), CLASS, t)?.filter(|_| self.timesteps.len() > 1);
        let (smin, smax, sd2) = (self.sigma_min as f32, self.sigma_max as f32, (self.sigma_data * self.sigma_data) as f32);
        let sigma = self.sigmas[i];
        let sigma_next = if i + 1 < self.num_train_timesteps { self.sigmas[i + 1] } else { self.sigmas[self.sigmas.len() - 1] };
        // get_scalings_for_boundary_condition: c_skip(σ_min) = 1, c_out(σ_min) = 0.
        let c_skip = sd2 / ((sigma - smin) * (sigma - smin) + sd2);
        let c_out = (sigma - smin) * self.sigma_data as f32 / (sigma * sigma + sd2).sqrt();
        let denoised: Vec<f32> = model_output
            .iter()
            .zip(sample)
            .map(|(m, x)| {
                let d = c_out * m + c_skip * x;
                if self.clip_denoised {
                    d.clamp(-1.0, 1.0)
                } else {
                    d
                }
            })
            .collect();
        let sigma_hat = sigma_next.max(smin).min(smax);
        let scale = (sigma_hat * sigma_hat - (self.sigma_min * self.sigma_min) as f32).sqrt();
        let s_noise = self.s_noise as f32;
        let prev_sample = match noise {
            Some(z) => denoised.iter().zip(z).map(|(d, z)| d + z * s_noise * scale).collect(),
            // A single-timestep run adds zeros (diffusers' torch.zeros_like).
            None => denoised.clone(),
        };
        self.index.step = Some(i + 1);
        Ok(StepOutput { prev_sample, pred_original_sample: denoised })
    }

    fn add_noise(&self, x0: &[f32], noise: &[f32], t: f64) -> Result<Vec<f32>> {
        check_len("noise", noise, x0.len())?;
        let i = self.index.for_add_noise(&self.timesteps, t)?;
        Ok(x0.iter().zip(noise).map(|(x, z)| x + z * self.sigmas[i]).collect())
    }

    fn order(&self) -> usize {
        1
    }

    fn set_begin_index(&mut self, begin: usize) -> Result<()> {
        self.index.begin = Some(begin);
        Ok(())
    }
}
