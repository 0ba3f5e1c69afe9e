//! `ScoreSdeVeScheduler`: the variance-exploding SDE sampler of Song et al. (2021), a reverse-SDE
//! predictor (`step_pred`) and a Langevin corrector (`step_correct`), both drawing fresh noise.
//! As in diffusers, `set_timesteps` and `set_sigmas` are separate calls whose order matters
//! (`set_sigmas` reads the timesteps set last).

use super::config::{check_len, need_noise, Cfg};
use super::{DiffusersScheduler, StepOutput};
use crate::error::{Error, Result};
use crate::sampler::schedule::linspace_f32;

const CLASS: &str = "ScoreSdeVeScheduler";

#[derive(Clone, Debug)]
pub struct ScoreSdeVeScheduler {
    snr: f64,
    sigma_min: f64,
    sigma_max: f64,
    sampling_eps: f64,
    /// Corrector steps per predictor step (`correct_steps`, for the caller's loop).
    pub correct_steps: usize,
    timesteps: Vec<f64>,
    /// σ(t) of each timestep at the last `set_sigmas` (f32, as diffusers).
    pub sigmas: Vec<f32>,
    /// The σ grid `step_pred` and `add_noise` index.
    pub discrete_sigmas: Vec<f32>,
    batch: usize,
}

/// What `step_pred` returns (diffusers' `SdeVeOutput`).
#[derive(Clone, Debug, PartialEq)]
pub struct SdeVeOutput {
    pub prev_sample: Vec<f32>,
    pub prev_sample_mean: Vec<f32>,
}

impl ScoreSdeVeScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let num_train_timesteps = cfg.usize("num_train_timesteps", 2000)?;
        if num_train_timesteps < 2 {
            return Err(Error::Scheduler(format!("`num_train_timesteps` = {num_train_timesteps}: need at least 2")));
        }
        let (sigma_min, sigma_max) = (cfg.f64("sigma_min", 0.01)?, cfg.f64("sigma_max", 1348.0)?);
        if !(sigma_min > 0.0 && sigma_max > sigma_min) {
            return Err(Error::Scheduler(format!("`sigma_min` = {sigma_min}, `sigma_max` = {sigma_max}: need 0 < sigma_min < sigma_max")));
        }
        let mut s = ScoreSdeVeScheduler {
            snr: cfg.f64("snr", 0.15)?,
            sigma_min,
            sigma_max,
            sampling_eps: cfg.f64("sampling_eps", 1e-5)?,
            correct_steps: cfg.usize("correct_steps", 1)?,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            discrete_sigmas: Vec::new(),
            batch: 1,
        };
        s.set_sigmas(num_train_timesteps)?;
        Ok(s)
    }

    /// `set_sigmas(n)`: σ(t) = σ_min·(σ_max/σ_min)^t over the current timesteps (set to n of them
    /// first if none are), and the geometric grid of n discrete σs.
    pub fn set_sigmas(&mut self, n: usize) -> Result<()> {
        if n < 1 {
            return Err(Error::Scheduler(format!("{CLASS}: set_sigmas({n}): need at least 1")));
        }
        if self.timesteps.is_empty() {
            self.set_timesteps(n)?;
        }
        let (min, ratio) = (self.sigma_min as f32, (self.sigma_max / self.sigma_min) as f32);
        self.sigmas = self.timesteps.iter().map(|&t| min * ratio.powf(t as f32)).collect();
        self.discrete_sigmas = linspace_f32(self.sigma_min.ln(), self.sigma_max.ln(), n).iter().map(|v| v.exp()).collect();
        Ok(())
    }

    /// The L2 norm of each batch item, averaged (torch.norm(x.reshape(b, -1), dim=-1).mean()).
    fn mean_norm(&self, x: &[f32]) -> f32 {
        let per = x.len() / self.batch;
        let sum: f32 = x.chunks(per).map(|c| (c.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>().sqrt()) as f32).sum();
        sum / self.batch as f32
    }

    /// `step_pred`: one reverse-SDE step from continuous time t ∈ (0, 1].
    pub fn step_pred(&self, model_output: &[f32], t: f64, sample: &[f32], noise: &[f32]) -> Result<SdeVeOutput> {
        let n = sample.len();
        check_len("model_output", model_output, n)?;
        check_len("noise", noise, n)?;
        if self.timesteps.is_empty() {
            return Err(Error::Scheduler(format!("{CLASS}: call set_timesteps before step_pred")));
        }
        let index = (t as f32 * (self.timesteps.len() - 1) as f32) as i64;
        let sigma_at = |i: i64| -> Result<f32> {
            let len = self.discrete_sigmas.len() as i64;
            // torch indexing: −1 is the last.
            let j = if i < 0 { i + len } else { i };
            self.discrete_sigmas.get(j as usize).copied().filter(|_| j >= 0).ok_or_else(|| {
                Error::Scheduler(format!("{CLASS}: timestep {t} indexes discrete sigma {i} of {len} (call set_sigmas for this many steps)"))
            })
        };
        let sigma = sigma_at(index)?;
        let adjacent = if index == 0 { 0.0 } else { sigma_at(index - 1)? };
        let diffusion = (sigma * sigma - adjacent * adjacent).sqrt();
        let d2 = diffusion * diffusion;
        let prev_sample_mean: Vec<f32> = sample.iter().zip(model_output).map(|(x, m)| x - (0.0 - d2 * m)).collect();
        let prev_sample = prev_sample_mean.iter().zip(noise).map(|(x, z)| x + diffusion * z).collect();
        Ok(SdeVeOutput { prev_sample, prev_sample_mean })
    }

    /// `step_correct`: one Langevin correction with step size 2·(snr·‖z‖/‖m‖)².
    pub fn step_correct(&self, model_output: &[f32], sample: &[f32], noise: &[f32]) -> Result<Vec<f32>> {
        let n = sample.len();
        check_len("model_output", model_output, n)?;
        check_len("noise", noise, n)?;
        if !n.is_multiple_of(self.batch) {
            return Err(Error::Input(format!("{CLASS}: a sample of {n} values is not {} equal batch items", self.batch)));
        }
        let (grad_norm, noise_norm) = (self.mean_norm(model_output), self.mean_norm(noise));
        let ratio = self.snr as f32 * noise_norm / grad_norm;
        let step_size = ratio * ratio * 2.0;
        let scale = (step_size * 2.0).sqrt();
        Ok(sample.iter().zip(model_output).zip(noise).map(|((x, m), z)| (x + step_size * m) + scale * z).collect())
    }
}

impl DiffusersScheduler for ScoreSdeVeScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    /// `set_timesteps(n)`: n times from 1 down to sampling_eps. The σs are not recomputed: call
    /// `set_sigmas` as diffusers' pipeline does.
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        if n < 1 {
            return Err(Error::Scheduler(format!("{CLASS}: {n} inference steps: need at least 1")));
        }
        self.timesteps = linspace_f32(1.0, self.sampling_eps, n).iter().map(|&v| v as f64).collect();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f32 {
        self.sigma_max as f32
    }

    /// `step_pred` (diffusers' class has no `step`); `pred_original_sample` holds its
    /// prev_sample_mean. The noise is required.
    fn step(&mut self, model_output: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
        let noise = need_noise(noise, true, sample.len(), CLASS, t)?.expect("required");
        let out = self.step_pred(model_output, t, sample, noise)?;
        Ok(StepOutput { prev_sample: out.prev_sample, pred_original_sample: out.prev_sample_mean })
    }

    /// original + noise·σ, σ the discrete sigma at integer index t.
    fn add_noise(&self, x0: &[f32], noise: &[f32], t: f64) -> Result<Vec<f32>> {
        check_len("noise", noise, x0.len())?;
        let sigma = (t >= 0.0 && t.fract() == 0.0)
            .then(|| self.discrete_sigmas.get(t as usize).copied())
            .flatten()
            .ok_or_else(|| Error::Scheduler(format!("{CLASS}: add_noise index {t} outside 0..{}", self.discrete_sigmas.len())))?;
        Ok(x0.iter().zip(noise).map(|(x, z)| z * sigma + x).collect())
    }

    fn order(&self) -> usize {
        1
    }

    fn set_batch_size(&mut self, batch: usize) -> Result<()> {
        self.batch = super::checked_batch(batch)?;
        Ok(())
    }
}
