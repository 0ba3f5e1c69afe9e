//! The EDM classes (Karras et al. 2022, "Elucidating the design space"): σ is the time variable,
//! the model is preconditioned (c_in, c_noise = ¼ ln σ, c_skip, c_out), and the σs follow the
//! ρ-ramp or an exponential one. `EDMEulerScheduler` here; the DPM-Solver++ variant in `edm_dpm`.

use super::config::{check_len, need_noise, Cfg};
use super::euler::Churn;
use super::sigmas::StepIndex;
use super::{DiffusersScheduler, StepOutput};
use crate::error::{Error, Result};
use crate::sampler::schedule::linspace_f32;

/// `torch.linspace(a, b, n, dtype=float64)`: the first half counted up from a, the second down
/// from b (one rounding each, as torch's kernel).
fn linspace_f64(a: f64, b: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a];
    }
    let step = (b - a) / (n - 1) as f64;
    (0..n).map(|i| if i < n / 2 { step.mul_add(i as f64, a) } else { (-step).mul_add((n - 1 - i) as f64, b) }).collect()
}

/// The EDM config keys both classes read and their σ ramps and preconditioning.
#[derive(Clone, Debug)]
pub struct Edm {
    pub sigma_min: f64,
    pub sigma_max: f64,
    pub sigma_data: f64,
    pub rho: f64,
    pub karras: bool,
    pub v_prediction: bool,
    pub final_sigma_min: bool,
}

impl Edm {
    pub fn read(cfg: &Cfg, predictions: &[&'static str]) -> Result<Self> {
        let (sigma_min, sigma_max) = (cfg.f64("sigma_min", 0.002)?, cfg.f64("sigma_max", 80.0)?);
        if !(sigma_min > 0.0 && sigma_max > sigma_min) {
            return Err(Error::Scheduler(format!("`sigma_min` = {sigma_min}, `sigma_max` = {sigma_max}: need 0 < sigma_min < sigma_max")));
        }
        cfg.usize("num_train_timesteps", 1000)?;
        Ok(Edm {
            sigma_min,
            sigma_max,
            sigma_data: cfg.f64("sigma_data", 0.5)?,
            rho: cfg.f64("rho", 7.0)?,
            karras: cfg.choice("sigma_schedule", "karras", &["karras", "exponential"])? == "karras",
            v_prediction: cfg.choice("prediction_type", "epsilon", predictions)? == "v_prediction",
            final_sigma_min: cfg.choice("final_sigmas_type", "zero", &["zero", "sigma_min"])? == "sigma_min",
        })
    }

    /// The n σs of `set_timesteps`, high to low, f32. `f64_ramp`: EDMEuler's ramp is float64
    /// (EDMDPMSolver's float32).
    pub fn sigmas(&self, n: usize, f64_ramp: bool) -> Vec<f32> {
        let (min_inv, max_inv) = (self.sigma_min.powf(1.0 / self.rho), self.sigma_max.powf(1.0 / self.rho));
        if !self.karras {
            // torch.linspace(log σ_min, log σ_max, n) (float32).exp().flip(0)
            return linspace_f32(self.sigma_min.ln(), self.sigma_max.ln(), n).iter().rev().map(|v| v.exp()).collect();
        }
        if f64_ramp {
            linspace_f64(0.0, 1.0, n).iter().map(|r| (max_inv + r * (min_inv - max_inv)).powf(self.rho) as f32).collect()
        } else {
            let (a, d, rho) = (max_inv as f32, (min_inv - max_inv) as f32, self.rho as f32);
            linspace_f32(0.0, 1.0, n).iter().map(|r| (a + r * d).powf(rho)).collect()
        }
    }

    /// c_noise = ¼·ln σ: the model's timestep.
    pub fn timesteps(sigmas: &[f32]) -> Vec<f64> {
        sigmas.iter().map(|s| (0.25 * s.ln()) as f64).collect()
    }

    /// c_in·x = x/√(σ² + σ_data²).
    pub fn precondition_inputs(&self, sample: &[f32], sigma: f32) -> Vec<f32> {
        let c_in = 1.0 / (sigma * sigma + (self.sigma_data * self.sigma_data) as f32).sqrt();
        sample.iter().map(|x| x * c_in).collect()
    }

    /// The denoised x0 = c_skip·x + c_out·F (c_out negated for v_prediction).
    pub fn precondition_outputs(&self, sample: &[f32], model_output: &[f32], sigma: f32) -> Vec<f32> {
        let sd2 = (self.sigma_data * self.sigma_data) as f32;
        let c_skip = sd2 / (sigma * sigma + sd2);
        let sign = if self.v_prediction { -sigma } else { sigma };
        let c_out = sign * self.sigma_data as f32 / (sigma * sigma + sd2).sqrt();
        sample.iter().zip(model_output).map(|(x, m)| c_skip * x + c_out * m).collect()
    }

    /// (σ_max² + 1)^½.
    pub fn init_noise_sigma(&self) -> f32 {
        (self.sigma_max * self.sigma_max + 1.0).sqrt() as f32
    }
}

const CLASS: &str = "EDMEulerScheduler";

#[derive(Clone, Debug)]
pub struct EdmEulerScheduler {
    pub edm: Edm,
    pub sigmas: Vec<f32>,
    timesteps: Vec<f64>,
    index: StepIndex,
    /// The churn `step` applies (none by default).
    pub churn: Churn,
}

impl EdmEulerScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let mut s = EdmEulerScheduler {
            edm: Edm::read(cfg, &["epsilon", "v_prediction"])?,
            sigmas: Vec::new(),
            timesteps: Vec::new(),
            index: StepIndex::default(),
            churn: Churn::default(),
        };
        s.set_timesteps(cfg.usize("num_train_timesteps", 1000)? + 1)?;
        Ok(s)
    }

    fn current(&mut self, t: f64) -> Result<usize> {
        self.index.checked(&self.timesteps, t, CLASS)
    }
}

impl DiffusersScheduler for EdmEulerScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        if n < 2 {
            return Err(Error::Scheduler(format!("{CLASS}: {n} inference steps: need at least 2 (the σ ramp's two ends)")));
        }
        let sigmas = self.edm.sigmas(n, true);
        self.timesteps = Edm::timesteps(&sigmas);
        let last = if self.edm.final_sigma_min { sigmas[n - 1] } else { 0.0 };
        self.sigmas = sigmas.into_iter().chain([last]).collect();
        self.index = StepIndex::default();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f32 {
        self.edm.init_noise_sigma()
    }

    fn scale_model_input(&mut self, sample: &[f32], t: f64) -> Result<Vec<f32>> {
        let i = self.current(t)?;
        Ok(self.edm.precondition_inputs(sample, self.sigmas[i]))
    }

    fn step(&mut self, model_output: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
        check_len("model_output", model_output, sample.len())?;
        let i = self.current(t)?;
        let sigma = self.sigmas[i];
        let c = self.churn;
        let gamma =
            if c.s_tmin <= sigma && sigma <= c.s_tmax { (c.s_churn / (self.sigmas.len() - 1) as f32).min(2f32.sqrt() - 1.0) } else { 0.0 };
        let sigma_hat = sigma * (gamma + 1.0);
        let noise = need_noise(noise, gamma > 0.0, sample.len(), CLASS, t)?;
        let sample: Vec<f32> = match noise.filter(|_| gamma > 0.0) {
            Some(z) => {
                let s = (sigma_hat * sigma_hat - sigma * sigma).sqrt();
                sample.iter().zip(z).map(|(x, z)| x + z * c.s_noise * s).collect()
            }
            None => sample.to_vec(),
        };
        let x0 = self.edm.precondition_outputs(&sample, model_output, sigma_hat);
        let dt = self.sigmas[i + 1] - sigma_hat;
        let prev_sample = sample.iter().zip(&x0).map(|(x, p)| x + (x - p) / sigma_hat * dt).collect();
        self.index.step = Some(i + 1);
        Ok(StepOutput { prev_sample, pred_original_sample: x0 })
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
