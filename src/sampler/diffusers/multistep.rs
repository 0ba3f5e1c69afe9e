//! What the multistep VP solvers (DPM-Solver multistep, UniPC) share: `set_timesteps` (integer
//! timesteps, σs interpolated or from a ramp), the step index with diffusers' fallback to the last
//! step, x0/ε conversion with dynamic thresholding, and `add_noise` at a σ.

use super::config::{check_len, threshold_sample, Cfg, Prediction};
use super::dpm_updates::alpha_sigma_lambda;
use super::sigmas::{karras, sigmas_to_t, Spacing};
use crate::error::{Error, Result};
use crate::sampler::diffusers::config::NoiseSchedule;
use crate::sampler::solvers::{interp, linspace};

/// Which σs replace the interpolated ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ramp {
    Interpolated,
    Karras,
    Exponential,
    /// `use_lu_lambdas`: uniform in λ = −ln σ (Lu et al. 2022's logSNR spacing).
    Lu,
}

/// The σ schedule of a multistep class and the class-specific rules of its `set_timesteps`.
#[derive(Clone, Debug)]
pub struct MultistepSigmas {
    pub schedule: NoiseSchedule,
    pub spacing: Spacing,
    pub steps_offset: usize,
    pub ramp: Ramp,
    pub final_sigma_min: bool,
    /// DPM-Solver: timesteps whose λ is below this are not visited.
    pub lambda_min_clipped: f64,
    /// DPM-Solver leaves Karras/Lu timesteps fractional (then truncated) for squaredcos_cap_v2.
    pub round_unless_cosine: bool,
    pub cosine: bool,
    /// UniPC: the ramp's ends from `sigma_min`/`sigma_max`, and its last σ as the final one.
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    pub ramp_final_is_ramp_last: bool,
    pub sigmas: Vec<f32>,
    pub timesteps: Vec<f64>,
    pub step_index: Option<usize>,
    pub begin_index: Option<usize>,
}

impl MultistepSigmas {
    pub fn new(schedule: NoiseSchedule, cfg: &Cfg, ramp: Ramp, final_sigma_min: bool) -> Result<Self> {
        Ok(MultistepSigmas {
            cosine: cfg.choice("beta_schedule", "linear", &["linear", "scaled_linear", "squaredcos_cap_v2"])? == "squaredcos_cap_v2",
            schedule,
            spacing: Spacing::read(cfg, "linspace")?,
            steps_offset: cfg.usize("steps_offset", 0)?,
            ramp,
            final_sigma_min,
            lambda_min_clipped: f64::NEG_INFINITY,
            round_unless_cosine: false,
            sigma_min: None,
            sigma_max: None,
            ramp_final_is_ramp_last: false,
            sigmas: Vec::new(),
            timesteps: Vec::new(),
            step_index: None,
            begin_index: None,
        })
    }

    /// `set_timesteps(n)`: timesteps and σs (with the final σ); resets the step index.
    pub fn set(&mut self, n: usize, class: &str) -> Result<()> {
        let t = self.schedule.num_train_timesteps();
        if n == 0 || n > t {
            return Err(Error::Scheduler(format!("{class}: {n} inference steps: must be from 1 to num_train_timesteps = {t}")));
        }
        let ac = &self.schedule.alphas_cumprod;
        // searchsorted(flip(λ_t), lambda_min_clipped): how many train λs lie below the clip.
        let clipped = ac.iter().filter(|&&a| ((a.sqrt().ln() - (1.0 - a).sqrt().ln()) as f64) < self.lambda_min_clipped).count();
        let last = t - clipped;
        let mut ts: Vec<f64> = match self.spacing {
            Spacing::Linspace => linspace(0.0, last as f64 - 1.0, n + 1).iter().rev().take(n).map(|v| v.round_ties_even()).collect(),
            Spacing::Leading => {
                let ratio = last / (n + 1);
                (1..=n).rev().map(|i| (i * ratio + self.steps_offset) as f64).collect()
            }
            Spacing::Trailing => {
                let ratio = t as f64 / n as f64;
                let len = (last as f64 / ratio).ceil() as usize;
                (0..len).map(|i| (last as f64 - i as f64 * ratio).round_ties_even() - 1.0).collect()
            }
        };
        let train = self.schedule.train_sigmas();
        let min = self.sigma_min.unwrap_or(train[0] as f64);
        let max = self.sigma_max.unwrap_or(train[t - 1] as f64);
        let sigmas: Vec<f64> = match self.ramp {
            Ramp::Interpolated => ts.iter().map(|&x| interp(x, &train)).collect(),
            Ramp::Karras => karras(min, max, n),
            Ramp::Exponential => linspace(max.ln(), min.ln(), n).iter().map(|v| v.exp()).collect(),
            Ramp::Lu => {
                let (lmin, lmax) = (train[0].ln() as f64, train[t - 1].ln() as f64);
                linspace(0.0, 1.0, n).iter().map(|r| (lmax + r * (lmin - lmax)).exp()).collect()
            }
        };
        if self.ramp != Ramp::Interpolated {
            ts = sigmas_to_t(&sigmas, &train);
            let round = self.ramp != Ramp::Exponential && !(self.round_unless_cosine && self.cosine);
            if round {
                ts = ts.into_iter().map(f64::round_ties_even).collect();
            }
        }
        if let Some(bad) = ts.iter().find(|&&v| v < 0.0 || v >= t as f64) {
            return Err(Error::Scheduler(format!("{class}: timestep {bad} outside 0..{t} (`steps_offset` too large?)")));
        }
        let last_sigma = match (self.final_sigma_min, self.ramp_final_is_ramp_last && self.ramp != Ramp::Interpolated) {
            (false, _) => 0.0,
            (true, true) => sigmas[sigmas.len() - 1] as f32,
            (true, false) => ((1.0 - ac[0]) / ac[0]).sqrt(),
        };
        self.sigmas = sigmas.iter().map(|&s| s as f32).chain([last_sigma]).collect();
        // torch's .to(int64) truncates.
        self.timesteps = ts.iter().map(|v| v.trunc()).collect();
        self.step_index = None;
        self.begin_index = None;
        Ok(())
    }

    /// `index_for_timestep`: the second match when t occurs twice, the last step when absent.
    pub fn index_for_timestep(&self, t: f64) -> usize {
        let hits: Vec<usize> = self.timesteps.iter().enumerate().filter(|(_, &v)| v == t).map(|(i, _)| i).collect();
        match hits.len() {
            0 => self.timesteps.len() - 1,
            1 => hits[0],
            _ => hits[1],
        }
    }

    /// The current step index (`_init_step_index` on the first call).
    pub fn current(&mut self, t: f64, class: &str) -> Result<usize> {
        if self.timesteps.is_empty() {
            return Err(Error::Scheduler(format!("{class}: call set_timesteps before step")));
        }
        let i = match self.step_index {
            Some(i) => i,
            None => self.begin_index.unwrap_or_else(|| self.index_for_timestep(t)),
        };
        if i >= self.timesteps.len() {
            return Err(Error::Scheduler(format!("{class}: step {i} is past the last step (call set_timesteps again)")));
        }
        self.step_index = Some(i);
        Ok(i)
    }

    /// α_t·x0 + σ_t·noise at the σ of timestep t.
    pub fn add_noise(&self, x0: &[f32], noise: &[f32], t: f64, class: &str) -> Result<Vec<f32>> {
        check_len("noise", noise, x0.len())?;
        if self.timesteps.is_empty() {
            return Err(Error::Scheduler(format!("{class}: call set_timesteps before add_noise")));
        }
        let i = match (self.begin_index, self.step_index) {
            (None, _) => self.index_for_timestep(t),
            (Some(_), Some(s)) => s,
            (Some(b), None) => b,
        };
        let (alpha_t, sigma_t, _) = alpha_sigma_lambda(self.sigmas[i]);
        Ok(x0.iter().zip(noise).map(|(x, z)| alpha_t * x + sigma_t * z).collect())
    }
}

/// Dynamic thresholding as the multistep classes read it: (ratio, max) when on.
pub fn read_thresholding(cfg: &Cfg) -> Result<Option<(f64, f64)>> {
    Ok(if cfg.bool("thresholding", false)? {
        Some((cfg.f64("dynamic_thresholding_ratio", 0.995)?, cfg.f64("sample_max_value", 1.0)?))
    } else {
        None
    })
}

/// How a multistep class turns the model output into what its solver steps with.
#[derive(Clone, Copy, Debug)]
pub struct Conversion {
    pub prediction: Prediction,
    /// x0 (data prediction) rather than ε.
    pub predicts_x0: bool,
    /// (ratio, max) of dynamic thresholding, when on.
    pub thresholding: Option<(f64, f64)>,
    /// Batch items in the flat sample (the thresholding quantile is per item).
    pub batch: usize,
}

/// `convert_model_output`: x0 (data-prediction solvers, thresholded when on) or ε at σ.
pub fn convert_model_output(c: Conversion, m: &[f32], x: &[f32], sigma: f32, class: &str) -> Result<Vec<f32>> {
    let Conversion { prediction, predicts_x0, thresholding, batch } = c;
    let (alpha_t, sigma_t, _) = alpha_sigma_lambda(sigma);
    let x0_of = |eps: &[f32]| -> Vec<f32> { x.iter().zip(eps).map(|(x, e)| (x - sigma_t * e) / alpha_t).collect() };
    let threshold = |x0: &mut Vec<f32>, (ratio, max): (f64, f64)| -> Result<()> {
        if !x0.len().is_multiple_of(batch) {
            return Err(Error::Input(format!("{class}: a sample of {} values is not {batch} equal batch items", x0.len())));
        }
        threshold_sample(x0, ratio, max, batch);
        Ok(())
    };
    if predicts_x0 {
        let mut x0: Vec<f32> = match prediction {
            Prediction::Epsilon => x0_of(m),
            Prediction::Sample => m.to_vec(),
            Prediction::VPrediction => x.iter().zip(m).map(|(x, m)| alpha_t * x - sigma_t * m).collect(),
        };
        if let Some(t) = thresholding {
            threshold(&mut x0, t)?;
        }
        return Ok(x0);
    }
    let eps: Vec<f32> = match prediction {
        Prediction::Epsilon => m.to_vec(),
        Prediction::Sample => x.iter().zip(m).map(|(x, m)| (x - alpha_t * m) / sigma_t).collect(),
        Prediction::VPrediction => x.iter().zip(m).map(|(x, m)| alpha_t * m + sigma_t * x).collect(),
    };
    let Some(t) = thresholding else { return Ok(eps) };
    // ε-space solvers threshold through x0 (DPM-Solver; UniPC's ε mode does not threshold).
    let mut x0 = x0_of(&eps);
    threshold(&mut x0, t)?;
    Ok(x.iter().zip(&x0).map(|(x, p)| (x - alpha_t * p) / sigma_t).collect())
}
