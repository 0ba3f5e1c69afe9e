//! `EulerAncestralDiscreteScheduler`: Euler steps down to σ_down plus fresh noise of σ_up
//! (k-diffusion's `sample_euler_ancestral`, η = 1).

use super::config::{check_len, need_noise, Cfg, NoiseSchedule, Prediction};
use super::sigmas::{init_noise_sigma, sigma_x0, SigmaCore, SigmaRamp};
use super::{DiffusersScheduler, StepOutput};
use crate::error::Result;

const CLASS: &str = "EulerAncestralDiscreteScheduler";

#[derive(Clone, Debug)]
pub struct EulerAncestralDiscreteScheduler {
    pub core: SigmaCore,
    prediction: Prediction,
}

impl EulerAncestralDiscreteScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let schedule = NoiseSchedule::read(cfg, 0.0001, 0.02, &["linear", "scaled_linear", "squaredcos_cap_v2"], true)?.terminal_not_zero();
        let mut s = EulerAncestralDiscreteScheduler {
            core: SigmaCore::new(schedule, cfg, SigmaRamp::Interpolated)?,
            // diffusers raises NotImplementedError for "sample" at step time; refused here at load.
            prediction: Prediction::read(cfg, &["epsilon", "v_prediction"])?,
        };
        s.set_timesteps(s.core.schedule.num_train_timesteps())?;
        Ok(s)
    }

    /// (σ_up, σ_down) of the step from σ to σ_next: σ_up² = σ_next²(σ² − σ_next²)/σ², σ_down² = σ_next² − σ_up².
    fn ancestral(sigma: f32, next: f32) -> (f32, f32) {
        let up = (next * next * (sigma * sigma - next * next) / (sigma * sigma)).sqrt();
        (up, (next * next - up * up).sqrt())
    }
}

impl DiffusersScheduler for EulerAncestralDiscreteScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        self.core.set(n, 0.0, CLASS)
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
        let (sigma, next) = (self.core.sigmas[i], self.core.sigmas[i + 1]);
        let (up, down) = Self::ancestral(sigma, next);
        let noise = need_noise(noise, up != 0.0, sample.len(), CLASS, t)?;
        let x0 = sigma_x0(self.prediction, sigma, sample, model_output);
        let dt = down - sigma;
        let prev_sample = (0..sample.len())
            .map(|k| {
                let derivative = (sample[k] - x0[k]) / sigma;
                let x = sample[k] + derivative * dt;
                // diffusers adds noise·σ_up even when σ_up is 0 (the last step): x + 0.
                x + noise.map_or(0.0, |z| z[k] * up)
            })
            .collect();
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
