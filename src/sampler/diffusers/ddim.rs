//! `DDIMScheduler`: denoising diffusion implicit models (Song et al. 2021), eq. 12, with η
//! (0: deterministic DDIM, 1: DDPM-like variance) and diffusers' x0 clipping/thresholding.

use super::config::{check_len, need_noise, Cfg, NoiseSchedule, Prediction};
use super::sigmas::Spacing;
use super::vp::{alpha_at, spaced_timesteps, x0_eps, X0Bound};
use super::{integer_timestep, DiffusersScheduler, StepOutput};
use crate::error::{Error, Result};

const CLASS: &str = "DDIMScheduler";

#[derive(Clone, Debug)]
pub struct DdimScheduler {
    pub schedule: NoiseSchedule,
    prediction: Prediction,
    bound: X0Bound,
    spacing: Spacing,
    steps_offset: usize,
    final_alpha_cumprod: f32,
    num_inference_steps: Option<usize>,
    timesteps: Vec<f64>,
    /// `step`'s eta (diffusers' default 0).
    pub eta: f32,
    /// `step`'s use_clipped_model_output: ε recomputed from the clipped x0.
    pub use_clipped_model_output: bool,
    /// Batch items in the flat sample (dynamic thresholding is per item).
    pub batch: usize,
}

impl DdimScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let schedule = NoiseSchedule::read(cfg, 0.0001, 0.02, &["linear", "scaled_linear", "squaredcos_cap_v2"], true)?;
        let final_alpha_cumprod = if cfg.bool("set_alpha_to_one", true)? { 1.0 } else { schedule.alphas_cumprod[0] };
        let t = schedule.num_train_timesteps();
        Ok(DdimScheduler {
            prediction: Prediction::read(cfg, &["epsilon", "sample", "v_prediction"])?,
            bound: X0Bound::read(cfg, true)?,
            spacing: Spacing::read(cfg, "leading")?,
            steps_offset: cfg.usize("steps_offset", 0)?,
            final_alpha_cumprod,
            num_inference_steps: None,
            timesteps: (0..t).rev().map(|v| v as f64).collect(),
            schedule,
            eta: 0.0,
            use_clipped_model_output: false,
            batch: 1,
        })
    }
}

impl DiffusersScheduler for DdimScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let ts = spaced_timesteps(self.spacing, self.schedule.num_train_timesteps(), n, self.steps_offset, CLASS)?;
        self.timesteps = ts.iter().map(|&v| v as f64).collect();
        self.num_inference_steps = Some(n);
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(&mut self, model_output: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
        check_len("model_output", model_output, sample.len())?;
        let n = self.num_inference_steps.ok_or_else(|| Error::Scheduler(format!("{CLASS}: call set_timesteps before step")))?;
        if !self.eta.is_finite() || self.eta < 0.0 {
            return Err(Error::Scheduler(format!("{CLASS}: eta = {}: must be a finite number ≥ 0", self.eta)));
        }
        let t = integer_timestep(t, CLASS)?;
        let noise = need_noise(noise, self.eta > 0.0, sample.len(), CLASS, t as f64)?;
        // The previous timestep is t − T/n, not the next one in the list (diffusers' DDIM).
        let prev_t = t - (self.schedule.num_train_timesteps() / n) as i64;
        let a = alpha_at(&self.schedule.alphas_cumprod, t, CLASS)?;
        let a_prev = if prev_t >= 0 { alpha_at(&self.schedule.alphas_cumprod, prev_t, CLASS)? } else { self.final_alpha_cumprod };
        let b = 1.0 - a;
        let (mut x0, mut eps) = x0_eps(self.prediction, a, sample, model_output);
        self.bound.apply(&mut x0, self.batch, CLASS)?;
        // σ_t(η) of eq. 16.
        let variance = (1.0 - a_prev) / b * (1.0 - a / a_prev);
        let std = self.eta * variance.sqrt();
        if self.use_clipped_model_output {
            eps = sample.iter().zip(&x0).map(|(x, p)| (x - a.sqrt() * p) / b.sqrt()).collect();
        }
        let dir = (1.0 - a_prev - std * std).sqrt();
        let sa_prev = a_prev.sqrt();
        let prev_sample = (0..sample.len())
            .map(|k| {
                let x = sa_prev * x0[k] + dir * eps[k];
                match noise.filter(|_| self.eta > 0.0) {
                    Some(z) => x + std * z[k],
                    None => x,
                }
            })
            .collect();
        Ok(StepOutput { prev_sample, pred_original_sample: x0 })
    }

    fn add_noise(&self, x0: &[f32], noise: &[f32], t: f64) -> Result<Vec<f32>> {
        self.schedule.add_noise_vp(x0, noise, t)
    }

    fn order(&self) -> usize {
        1
    }

    fn set_batch_size(&mut self, batch: usize) -> Result<()> {
        self.batch = super::checked_batch(batch)?;
        Ok(())
    }
}
