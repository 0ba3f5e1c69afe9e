//! What the sigma-space (k-diffusion style) classes share: their timestep spacing (numpy f64 cast
//! to f32), σ interpolation, the Karras/exponential σ ramps, σ → t, and the step index found from
//! the timestep on the first call (`_init_step_index`).

use super::config::Cfg;
use crate::error::{Error, Result};
use crate::sampler::schedule::Schedule;
use crate::sampler::solvers::{interp, linspace};

/// `timestep_spacing` as diffusers spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spacing {
    Linspace,
    Leading,
    Trailing,
}

impl Spacing {
    pub fn read(cfg: &Cfg, default: &'static str) -> Result<Self> {
        Ok(match cfg.choice("timestep_spacing", default, &["linspace", "leading", "trailing"])? {
            "linspace" => Spacing::Linspace,
            "leading" => Spacing::Leading,
            _ => Spacing::Trailing,
        })
    }
}

/// Which σ ramp replaces the interpolated σs (`use_karras_sigmas`, `use_exponential_sigmas`;
/// `use_beta_sigmas` needs scipy's beta quantile and is refused by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigmaRamp {
    Interpolated,
    Karras,
    Exponential,
}

impl SigmaRamp {
    pub fn read(cfg: &Cfg, exponential: bool) -> Result<Self> {
        let karras = cfg.bool("use_karras_sigmas", false)?;
        let expo = exponential && cfg.bool("use_exponential_sigmas", false)?;
        let beta = exponential && cfg.bool("use_beta_sigmas", false)?;
        if [karras, expo, beta].iter().filter(|b| **b).count() > 1 {
            return Err(Error::Scheduler(
                "only one of `use_beta_sigmas`, `use_exponential_sigmas`, `use_karras_sigmas` can be true".into(),
            ));
        }
        if beta {
            return Err(Error::Scheduler("`use_beta_sigmas` = true is not implemented (it needs scipy's beta quantile)".into()));
        }
        Ok(if karras {
            SigmaRamp::Karras
        } else if expo {
            SigmaRamp::Exponential
        } else {
            SigmaRamp::Interpolated
        })
    }

    /// The ramp's n σs between σ_min and σ_max (from high to low).
    pub fn apply(self, sigmas: Vec<f64>, n: usize, min: Option<f64>, max: Option<f64>) -> Vec<f64> {
        let min = min.unwrap_or(sigmas[sigmas.len() - 1]);
        let max = max.unwrap_or(sigmas[0]);
        match self {
            SigmaRamp::Interpolated => sigmas,
            SigmaRamp::Karras => karras(min, max, n),
            SigmaRamp::Exponential => linspace(max.ln(), min.ln(), n).iter().map(|v| v.exp()).collect(),
        }
    }
}

/// `_convert_to_karras`: Karras et al. (2022) eq. 5, ρ = 7.
pub fn karras(min: f64, max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv, max_inv) = (min.powf(1.0 / rho), max.powf(1.0 / rho));
    linspace(0.0, 1.0, n).iter().map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho)).collect()
}

/// The spaced timesteps of the sigma classes' `set_timesteps`, as f32 (numpy computes in f64 and
/// casts): noisiest first.
pub fn spaced_timesteps(spacing: Spacing, t: usize, n: usize, steps_offset: usize) -> Vec<f32> {
    match spacing {
        Spacing::Linspace => linspace(0.0, (t - 1) as f64, n).into_iter().rev().map(|v| v as f32).collect(),
        Spacing::Leading => {
            let ratio = t / n;
            (0..n).rev().map(|i| (i * ratio) as f32 + steps_offset as f32).collect()
        }
        Spacing::Trailing => {
            let ratio = t as f64 / n as f64;
            let len = (t as f64 / ratio).ceil() as usize;
            (0..len).map(|i| (t as f64 - i as f64 * ratio).round_ties_even() as f32 - 1.0).collect()
        }
    }
}

/// np.interp of the train σs at (fractional) timesteps.
pub fn interp_sigmas(timesteps: &[f32], train_sigmas: &[f32]) -> Vec<f64> {
    timesteps.iter().map(|&x| interp(x as f64, train_sigmas)).collect()
}

/// `_sigma_to_t` as KDPM2 evaluates it for its interpolated σs: every step in f32 (torch tensors).
pub fn sigma_to_t_f32(sigma: f32, log_sigmas: &[f32]) -> f32 {
    let log_sigma = sigma.max(1e-10).ln();
    let last_ge = log_sigmas.iter().rposition(|&l| log_sigma - l >= 0.0);
    let low = last_ge.unwrap_or(0).min(log_sigmas.len() - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f32 + w * (low + 1) as f32
}

/// `_sigma_to_t` over f32 log σs (np.log of the f32 train σs).
pub fn sigmas_to_t(sigmas: &[f64], train_sigmas: &[f32]) -> Vec<f64> {
    let log_sigmas: Vec<f32> = train_sigmas.iter().map(|s| s.ln()).collect();
    sigmas.iter().map(|&s| Schedule::sigma_to_t(s, &log_sigmas)).collect()
}

/// The step counter of the sigma classes: `_step_index`, set from the timestep on the first
/// `scale_model_input`/`step` unless `set_begin_index` fixed it.
#[derive(Clone, Debug, Default)]
pub struct StepIndex {
    pub step: Option<usize>,
    pub begin: Option<usize>,
}

impl StepIndex {
    /// `index_for_timestep`: the position of t in the schedule; the second one when t occurs
    /// twice, so that a run started in the middle (img2img) does not skip a σ.
    pub fn index_for_timestep(timesteps: &[f64], t: f64) -> Result<usize> {
        let hits: Vec<usize> = timesteps.iter().enumerate().filter(|(_, &v)| v == t).map(|(i, _)| i).collect();
        match hits.len() {
            0 => Err(Error::Scheduler(format!("timestep {t} is not one of the timesteps set by set_timesteps ({timesteps:?})"))),
            1 => Ok(hits[0]),
            _ => Ok(hits[1]),
        }
    }

    /// `current`, refusing a schedule not set yet and a step past the last (for `class`'s errors).
    pub fn checked(&mut self, timesteps: &[f64], t: f64, class: &str) -> Result<usize> {
        if timesteps.is_empty() {
            return Err(Error::Scheduler(format!("{class}: call set_timesteps before step")));
        }
        let i = self.current(timesteps, t)?;
        if i >= timesteps.len() {
            return Err(Error::Scheduler(format!("{class}: step {i} is past the last step (call set_timesteps again)")));
        }
        Ok(i)
    }

    /// `_init_step_index` when no step was taken yet; the current step index.
    pub fn current(&mut self, timesteps: &[f64], t: f64) -> Result<usize> {
        if self.step.is_none() {
            self.step = Some(match self.begin {
                Some(b) => b,
                None => Self::index_for_timestep(timesteps, t)?,
            });
        }
        Ok(self.step.expect("set above"))
    }

    /// The index `add_noise` uses for t: from the timestep unless a begin index is set.
    pub fn for_add_noise(&self, timesteps: &[f64], t: f64) -> Result<usize> {
        match (self.begin, self.step) {
            (None, _) => Self::index_for_timestep(timesteps, t),
            (Some(_), Some(s)) => Ok(s),
            (Some(b), None) => Ok(b),
        }
    }
}

/// `init_noise_sigma` of the sigma classes: σ_max, or √(σ_max² + 1) for "leading" spacing.
pub fn init_noise_sigma(sigmas: &[f32], spacing: Spacing) -> f32 {
    let max = sigmas.iter().cloned().fold(f32::MIN, f32::max);
    match spacing {
        Spacing::Linspace | Spacing::Trailing => max,
        Spacing::Leading => (max * max + 1.0).sqrt(),
    }
}

/// `sample / (σ² + 1)^0.5` in f32.
pub fn scale_by_sigma(sample: &[f32], sigma: f32) -> Vec<f32> {
    let d = (sigma * sigma + 1.0).sqrt();
    sample.iter().map(|x| x / d).collect()
}

/// `original + noise · σ` in f32 (the sigma classes' `add_noise`).
pub fn add_noise_ve(x0: &[f32], noise: &[f32], sigma: f32) -> Result<Vec<f32>> {
    super::config::check_len("noise", noise, x0.len())?;
    Ok(x0.iter().zip(noise).map(|(x, z)| x + z * sigma).collect())
}

/// The σ schedule of LMS, Euler, Euler ancestral and Heun: the config keys they share and the
/// `set_timesteps` they share (spaced timesteps → interpolated σs → optional ramp → final σ).
#[derive(Clone, Debug)]
pub struct SigmaCore {
    pub schedule: super::config::NoiseSchedule,
    pub spacing: Spacing,
    pub steps_offset: usize,
    pub ramp: SigmaRamp,
    /// `sigma_min`/`sigma_max` of the classes that read them (the ramp's ends).
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    /// σ per step and the final one (`self.sigmas`), f32 as diffusers stores them.
    pub sigmas: Vec<f32>,
    pub timesteps: Vec<f64>,
    pub index: StepIndex,
    /// KDPM2: Karras timesteps are rounded, and ramp timesteps stay f64 (not cast to f32).
    pub kdpm2_timesteps: bool,
}

impl SigmaCore {
    pub fn new(schedule: super::config::NoiseSchedule, cfg: &Cfg, ramp: SigmaRamp) -> Result<Self> {
        Ok(SigmaCore {
            schedule,
            spacing: Spacing::read(cfg, "linspace")?,
            steps_offset: cfg.usize("steps_offset", 0)?,
            ramp,
            sigma_min: None,
            sigma_max: None,
            sigmas: Vec::new(),
            timesteps: Vec::new(),
            index: StepIndex::default(),
            kdpm2_timesteps: false,
        })
    }

    /// `set_timesteps(n)` with `final_sigma` appended; resets the step index.
    pub fn set(&mut self, n: usize, final_sigma: f32, class: &str) -> Result<()> {
        let t = self.schedule.num_train_timesteps();
        if n == 0 || n > t {
            return Err(Error::Scheduler(format!("{class}: {n} inference steps: must be from 1 to num_train_timesteps = {t}")));
        }
        // Timesteps past the train range (leading spacing with steps_offset) are not an error:
        // np.interp clamps them to the last σ, as here.
        let mut ts: Vec<f64> = spaced_timesteps(self.spacing, t, n, self.steps_offset).iter().map(|&v| v as f64).collect();
        let train = self.schedule.train_sigmas();
        let ts32: Vec<f32> = ts.iter().map(|&v| v as f32).collect();
        let mut sigmas = interp_sigmas(&ts32, &train);
        if self.ramp != SigmaRamp::Interpolated {
            sigmas = self.ramp.apply(sigmas, n, self.sigma_min, self.sigma_max);
            ts = sigmas_to_t(&sigmas, &train);
            if self.kdpm2_timesteps && self.ramp == SigmaRamp::Karras {
                ts = ts.into_iter().map(f64::round_ties_even).collect();
            }
        }
        self.sigmas = sigmas.iter().map(|&s| s as f32).chain([final_sigma]).collect();
        let keep_f64 = self.kdpm2_timesteps && self.ramp != SigmaRamp::Interpolated;
        self.timesteps = ts.iter().map(|&v| if keep_f64 { v } else { v as f32 as f64 }).collect();
        self.index = StepIndex::default();
        Ok(())
    }

    /// σ_0 = √((1 − ᾱ_0)/ᾱ_0) in f32 (`final_sigmas_type` = "sigma_min").
    pub fn sigma_at_zero(&self) -> f32 {
        let a = self.schedule.alphas_cumprod[0];
        ((1.0 - a) / a).sqrt()
    }

    pub fn check_set(&self, class: &str) -> Result<()> {
        if self.timesteps.is_empty() {
            return Err(Error::Scheduler(format!("{class}: call set_timesteps before step")));
        }
        Ok(())
    }

    /// The current step index (found from t on the first call) and σ there.
    pub fn current(&mut self, t: f64, class: &str) -> Result<usize> {
        self.check_set(class)?;
        let i = self.index.current(&self.timesteps, t)?;
        if i + 1 >= self.sigmas.len() {
            return Err(Error::Scheduler(format!("{class}: step {i} is past the last step (call set_timesteps again)")));
        }
        Ok(i)
    }

    pub fn scale_model_input(&mut self, sample: &[f32], t: f64, class: &str) -> Result<Vec<f32>> {
        let i = self.current(t, class)?;
        Ok(scale_by_sigma(sample, self.sigmas[i]))
    }

    pub fn add_noise(&self, x0: &[f32], noise: &[f32], t: f64, class: &str) -> Result<Vec<f32>> {
        self.check_set(class)?;
        let i = self.index.for_add_noise(&self.timesteps, t)?;
        add_noise_ve(x0, noise, self.sigmas[i])
    }

    pub fn set_begin_index(&mut self, begin: usize) -> Result<()> {
        self.index.begin = Some(begin);
        Ok(())
    }
}

/// x0 from the model output in σ space (the sigma classes' epsilon / v_prediction / sample), f32.
pub fn sigma_x0(prediction: super::config::Prediction, sigma: f32, sample: &[f32], model_output: &[f32]) -> Vec<f32> {
    use super::config::Prediction;
    let (c_out, c_skip) = (-sigma / (sigma * sigma + 1.0).sqrt(), sigma * sigma + 1.0);
    sample
        .iter()
        .zip(model_output)
        .map(|(&x, &m)| match prediction {
            Prediction::Epsilon => x - sigma * m,
            Prediction::VPrediction => m * c_out + x / c_skip,
            Prediction::Sample => m,
        })
        .collect()
}
