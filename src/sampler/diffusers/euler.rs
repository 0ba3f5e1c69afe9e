//! `EulerDiscreteScheduler`: Karras et al. (2022) Algorithm 2's Euler step in σ space, with the
//! optional "churn" (noise added before the step, γ = min(s_churn/n, √2 − 1)).

use super::config::{check_len, need_noise, Cfg, NoiseSchedule, Prediction};
use super::sigmas::{init_noise_sigma, sigma_x0, SigmaCore, SigmaRamp};
use super::{DiffusersScheduler, StepOutput};
use crate::error::{Error, Result};

const CLASS: &str = "EulerDiscreteScheduler";

/// `step`'s s_churn, s_tmin, s_tmax, s_noise (diffusers' defaults: no churn).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Churn {
    pub s_churn: f32,
    pub s_tmin: f32,
    pub s_tmax: f32,
    pub s_noise: f32,
}

impl Default for Churn {
    fn default() -> Self {
        Churn { s_churn: 0.0, s_tmin: 0.0, s_tmax: f32::INFINITY, s_noise: 1.0 }
    }
}

#[derive(Clone, Debug)]
pub struct EulerDiscreteScheduler {
    pub core: SigmaCore,
    prediction: Prediction,
    final_sigma_min: bool,
    /// timestep_type "continuous" with v_prediction: the model's timestep is ¼·ln σ.
    continuous_v: bool,
    /// The churn `step` applies.
    pub churn: Churn,
}

impl EulerDiscreteScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let schedule = NoiseSchedule::read(cfg, 0.0001, 0.02, &["linear", "scaled_linear", "squaredcos_cap_v2"], true)?.terminal_not_zero();
        let mut core = SigmaCore::new(schedule, cfg, SigmaRamp::read(cfg, true)?)?;
        core.sigma_min = cfg.opt_f64("sigma_min")?;
        core.sigma_max = cfg.opt_f64("sigma_max")?;
        if cfg.choice("interpolation_type", "linear", &["linear", "log_linear"])? == "log_linear" {
            return Err(Error::Scheduler("`interpolation_type` = \"log_linear\" is not implemented".into()));
        }
        let prediction = Prediction::read(cfg, &["epsilon", "v_prediction", "sample"])?;
        let continuous = cfg.choice("timestep_type", "discrete", &["discrete", "continuous"])? == "continuous";
        let mut s = EulerDiscreteScheduler {
            core,
            prediction,
            final_sigma_min: cfg.choice("final_sigmas_type", "zero", &["zero", "sigma_min"])? == "sigma_min",
            continuous_v: continuous && prediction == Prediction::VPrediction,
            churn: Churn::default(),
        };
        s.set_timesteps(s.core.schedule.num_train_timesteps())?;
        Ok(s)
    }
}

impl DiffusersScheduler for EulerDiscreteScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let last = if self.final_sigma_min { self.core.sigma_at_zero() } else { 0.0 };
        self.core.set(n, last, CLASS)?;
        if self.continuous_v {
            let s = &self.core.sigmas;
            self.core.timesteps = s[..s.len() - 1].iter().map(|s| (0.25 * s.ln()) as f64).collect();
        }
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.core.timesteps
    }

    fn init_noise_sigma(&self) -> f32 {
        init_noise_sigma(&self.core.sigmas, self.core.spacing)
    }

    fn scale_model_input(&mut self, sample: &[f32], t: f64) -> Result<Vec<f32>> {
        self.core.scale_model_input(sample, t, CLASS)
    }

    fn step(&mut self, model_output: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
        check_len("model_output", model_output, sample.len())?;
        let i = self.core.current(t, CLASS)?;
        let sigma = self.core.sigmas[i];
        let c = self.churn;
        let gamma = if c.s_tmin <= sigma && sigma <= c.s_tmax {
            (c.s_churn / (self.core.sigmas.len() - 1) as f32).min(2f32.sqrt() - 1.0)
        } else {
            0.0
        };
        let sigma_hat = sigma * (gamma + 1.0);
        let noise = need_noise(noise, gamma > 0.0, sample.len(), CLASS, t)?;
        let sample: Vec<f32> = match noise.filter(|_| gamma > 0.0) {
            Some(z) => {
                let s = (sigma_hat * sigma_hat - sigma * sigma).sqrt();
                sample.iter().zip(z).map(|(x, z)| x + z * c.s_noise * s).collect()
            }
            None => sample.to_vec(),
        };
        // epsilon reads the model at σ̂; v_prediction at σ (as diffusers).
        let x0_sigma = if self.prediction == Prediction::Epsilon { sigma_hat } else { sigma };
        let x0 = sigma_x0(self.prediction, x0_sigma, &sample, model_output);
        let dt = self.core.sigmas[i + 1] - sigma_hat;
        let prev_sample = sample.iter().zip(&x0).map(|(x, p)| x + (x - p) / sigma_hat * dt).collect();
        self.core.index.step = Some(i + 1);
        Ok(StepOutput { prev_sample, pred_original_sample: x0 })
    }

    fn add_noise(&self, x0: &[f32], noise: &[f32], t: f64) -> Result<Vec<f32>> {
        self.core.add_noise(x0, noise, t, CLASS)
    }

    fn order(&self) -> usize {
        1
    }

    fn set_begin_index(&mut self, begin: usize) -> Result<()> {
        self.core.set_begin_index(begin)
    }
}
