//! `DDPMScheduler`: ancestral sampling of Ho et al. (2020), eqs. 6–7 (the posterior q(x_{t−1} |
//! x_t, x0)), with diffusers' variance types, x0 clipping/thresholding, and any timestep subset.

use super::config::{check_len, need_noise, Cfg, NoiseSchedule, Prediction};
use super::sigmas::Spacing;
use super::vp::{alpha_at, spaced_timesteps, x0_eps, X0Bound};
use super::{integer_timestep, DiffusersScheduler, StepOutput};
use crate::error::{Error, Result};

const CLASS: &str = "DDPMScheduler";

/// `variance_type` (fixed_large_log is refused: diffusers takes the square root of a log there,
/// which is NaN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variance {
    FixedSmall,
    FixedSmallLog,
    FixedLarge,
    Learned,
    LearnedRange,
}

#[derive(Clone, Debug)]
pub struct DdpmScheduler {
    pub schedule: NoiseSchedule,
    prediction: Prediction,
    bound: X0Bound,
    variance: Variance,
    spacing: Spacing,
    steps_offset: usize,
    timesteps: Vec<f64>,
    /// Batch items in the flat sample (dynamic thresholding is per item).
    pub batch: usize,
}

impl DdpmScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let schedule =
            NoiseSchedule::read(cfg, 0.0001, 0.02, &["linear", "scaled_linear", "squaredcos_cap_v2", "laplace", "sigmoid"], true)?;
        let variance = match cfg.choice(
            "variance_type",
            "fixed_small",
            &["fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range"],
        )? {
            "fixed_small" => Variance::FixedSmall,
            "fixed_small_log" => Variance::FixedSmallLog,
            "fixed_large" => Variance::FixedLarge,
            "learned" => Variance::Learned,
            "learned_range" => Variance::LearnedRange,
            _ => {
                return Err(Error::Scheduler(
                    "`variance_type` = \"fixed_large_log\" is not implemented (diffusers' step takes the square root of log β, NaN)".into(),
                ))
            }
        };
        let t = schedule.num_train_timesteps();
        Ok(DdpmScheduler {
            prediction: Prediction::read(cfg, &["epsilon", "sample", "v_prediction"])?,
            bound: X0Bound::read(cfg, true)?,
            variance,
            spacing: Spacing::read(cfg, "leading")?,
            steps_offset: cfg.usize("steps_offset", 0)?,
            // Before set_timesteps every train timestep is visited (previous = t − 1).
            timesteps: (0..t).rev().map(|v| v as f64).collect(),
            schedule,
            batch: 1,
        })
    }

    /// `previous_timestep`: the next one in the list, −1 after the last.
    fn previous_timestep(&self, t: i64) -> Result<i64> {
        let i = self
            .timesteps
            .iter()
            .position(|&v| v == t as f64)
            .ok_or_else(|| Error::Scheduler(format!("{CLASS}: timestep {t} is not one of the timesteps set by set_timesteps")))?;
        Ok(self.timesteps.get(i + 1).map_or(-1, |&v| v as i64))
    }
}

impl DiffusersScheduler for DdpmScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let ts = spaced_timesteps(self.spacing, self.schedule.num_train_timesteps(), n, self.steps_offset, CLASS)?;
        self.timesteps = ts.iter().map(|&v| v as f64).collect();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// With a learned variance the model output holds 2× the sample's values: the prediction,
    /// then the variance (diffusers splits the channels; one flat batch item here).
    fn step(&mut self, model_output: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
        let n = sample.len();
        let learned = matches!(self.variance, Variance::Learned | Variance::LearnedRange);
        let (model_output, predicted_variance) = if learned {
            if model_output.len() != 2 * n {
                return Err(Error::Input(format!(
                    "{CLASS}: a learned `variance_type` needs a model output of 2 × {n} values (prediction, then variance), got {}",
                    model_output.len()
                )));
            }
            (&model_output[..n], Some(&model_output[n..]))
        } else {
            check_len("model_output", model_output, n)?;
            (model_output, None)
        };
        let t = integer_timestep(t, CLASS)?;
        let noise = need_noise(noise, t > 0, n, CLASS, t as f64)?;
        let prev_t = self.previous_timestep(t)?;
        let a = alpha_at(&self.schedule.alphas_cumprod, t, CLASS)?;
        let a_prev = if prev_t >= 0 { alpha_at(&self.schedule.alphas_cumprod, prev_t, CLASS)? } else { 1.0 };
        let (b, b_prev) = (1.0 - a, 1.0 - a_prev);
        let alpha_t = a / a_prev;
        let beta_t = 1.0 - alpha_t;
        let (mut x0, _) = x0_eps(self.prediction, a, sample, model_output);
        self.bound.apply(&mut x0, self.batch, CLASS)?;
        // Eq. 7: μ̃ = √ᾱ_{t−1}β_t/(1−ᾱ_t)·x0 + √α_t(1−ᾱ_{t−1})/(1−ᾱ_t)·x_t.
        let c_x0 = a_prev.sqrt() * beta_t / b;
        let c_x = alpha_t.sqrt() * b_prev / b;
        // β̃_t, floored at 1e-20 so that its log is finite.
        let small = (b_prev / b * beta_t).max(1e-20);
        let prev_sample = (0..n)
            .map(|k| {
                let mean = c_x0 * x0[k] + c_x * sample[k];
                let Some(z) = noise.filter(|_| t > 0) else { return mean };
                let scale = match self.variance {
                    Variance::FixedSmall => small.sqrt(),
                    Variance::FixedSmallLog => (0.5 * small.ln()).exp(),
                    Variance::FixedLarge => beta_t.sqrt(),
                    Variance::Learned => predicted_variance.expect("learned")[k].sqrt(),
                    Variance::LearnedRange => {
                        let frac = (predicted_variance.expect("learned")[k] + 1.0) / 2.0;
                        (0.5 * (frac * beta_t.ln() + (1.0 - frac) * small.ln())).exp()
                    }
                };
                mean + scale * z[k]
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
