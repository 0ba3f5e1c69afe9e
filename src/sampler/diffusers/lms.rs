//! `LMSDiscreteScheduler`: the linear multistep method of k-diffusion (Karras et al. 2022's
//! σ-space ODE), integrating the Lagrange polynomial through the last (up to four) derivatives.

use super::config::{check_len, Cfg, NoiseSchedule, Prediction};
use super::sigmas::{init_noise_sigma, sigma_x0, SigmaCore, SigmaRamp};
use super::{DiffusersScheduler, StepOutput};
use crate::error::Result;

const CLASS: &str = "LMSDiscreteScheduler";

/// diffusers' default `order` argument of `step`.
const LMS_ORDER: usize = 4;

#[derive(Clone, Debug)]
pub struct LmsDiscreteScheduler {
    pub core: SigmaCore,
    prediction: Prediction,
    derivatives: Vec<Vec<f32>>,
}

impl LmsDiscreteScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let schedule = NoiseSchedule::read(cfg, 0.0001, 0.02, &["linear", "scaled_linear", "squaredcos_cap_v2"], false)?;
        let mut s = LmsDiscreteScheduler {
            core: SigmaCore::new(schedule, cfg, SigmaRamp::read(cfg, true)?)?,
            prediction: Prediction::read(cfg, &["epsilon", "v_prediction", "sample"])?,
            derivatives: Vec::new(),
        };
        s.set_timesteps(s.core.schedule.num_train_timesteps())?;
        Ok(s)
    }

    /// `get_lms_coefficient`: ∫ from σ_i to σ_{i+1} of the Lagrange basis polynomial of the
    /// derivative `current` steps back, over the last `order` σs. diffusers integrates it with
    /// scipy's quad; the polynomial has degree < 4, so 3-point Gauss-Legendre is exact.
    fn lms_coefficient(&self, order: usize, i: usize, current: usize) -> f64 {
        let s = |k: usize| self.core.sigmas[i - k] as f64;
        let basis = |tau: f64| (0..order).filter(|&k| k != current).map(|k| (tau - s(k)) / (s(current) - s(k))).product::<f64>();
        let (a, b) = (self.core.sigmas[i] as f64, self.core.sigmas[i + 1] as f64);
        let (mid, half) = ((a + b) / 2.0, (b - a) / 2.0);
        let x = (3.0f64 / 5.0).sqrt();
        half * (5.0 / 9.0 * basis(mid - half * x) + 8.0 / 9.0 * basis(mid) + 5.0 / 9.0 * basis(mid + half * x))
    }
}

impl DiffusersScheduler for LmsDiscreteScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        self.core.set(n, 0.0, CLASS)?;
        self.derivatives.clear();
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
        if let Some(z) = noise {
            check_len("noise", z, sample.len())?;
        }
        let i = self.core.current(t, CLASS)?;
        let sigma = self.core.sigmas[i];
        let x0 = sigma_x0(self.prediction, sigma, sample, model_output);
        let derivative: Vec<f32> = sample.iter().zip(&x0).map(|(x, p)| (x - p) / sigma).collect();
        self.derivatives.push(derivative);
        if self.derivatives.len() > LMS_ORDER {
            self.derivatives.remove(0);
        }
        let order = (i + 1).min(LMS_ORDER);
        // sample + Σ_k coeff_k · d_{-k}, newest derivative first, summed in f32 like Python's sum.
        let mut acc = vec![0.0f32; sample.len()];
        for (k, d) in (0..order).zip(self.derivatives.iter().rev()) {
            let c = self.lms_coefficient(order, i, k) as f32;
            for (a, d) in acc.iter_mut().zip(d) {
                *a += c * d;
            }
        }
        let prev_sample = sample.iter().zip(&acc).map(|(x, a)| x + a).collect();
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
