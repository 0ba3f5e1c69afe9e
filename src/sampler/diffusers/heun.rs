//! `HeunDiscreteScheduler`: Karras et al. (2022) Algorithm 1 without churn. Each step is two
//! model evaluations (an Euler predictor to σ_next, then the trapezoidal corrector); the last
//! step, to σ = 0, is the Euler predictor alone. diffusers lists every σ but the first and last
//! twice, and `step` alternates between the two orders.

use super::config::{check_len, Cfg, NoiseSchedule, Prediction};
use super::sigmas::{init_noise_sigma, sigma_x0, SigmaCore, SigmaRamp};
use super::{DiffusersScheduler, StepOutput};
use crate::error::Result;

const CLASS: &str = "HeunDiscreteScheduler";

#[derive(Clone, Debug)]
pub struct HeunDiscreteScheduler {
    pub core: SigmaCore,
    prediction: Prediction,
    clip_sample_range: Option<f32>,
    /// The first-order half of the current step (derivative, dt, sample): `Some` while the
    /// corrector evaluation is pending (diffusers' `state_in_first_order` is its absence).
    first: Option<(Vec<f32>, f32, Vec<f32>)>,
}

impl HeunDiscreteScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let schedule = NoiseSchedule::read(cfg, 0.00085, 0.012, &["linear", "scaled_linear", "squaredcos_cap_v2", "exp"], false)?;
        let clip = cfg.bool("clip_sample", false)?;
        let range = cfg.f64("clip_sample_range", 1.0)? as f32;
        let mut s = HeunDiscreteScheduler {
            core: SigmaCore::new(schedule, cfg, SigmaRamp::read(cfg, true)?)?,
            prediction: Prediction::read(cfg, &["epsilon", "v_prediction", "sample"])?,
            clip_sample_range: clip.then_some(range),
            first: None,
        };
        s.set_timesteps(s.core.schedule.num_train_timesteps())?;
        Ok(s)
    }

    /// diffusers' `state_in_first_order`.
    pub fn state_in_first_order(&self) -> bool {
        self.first.is_none()
    }
}

impl DiffusersScheduler for HeunDiscreteScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        self.core.set(n, 0.0, CLASS)?;
        let (s, t) = (&self.core.sigmas, &self.core.timesteps);
        let sigmas: Vec<f32> = [s[0]].into_iter().chain(s[1..s.len() - 1].iter().flat_map(|&v| [v, v])).chain([s[s.len() - 1]]).collect();
        let timesteps: Vec<f64> = [t[0]].into_iter().chain(t[1..].iter().flat_map(|&v| [v, v])).collect();
        self.core.sigmas = sigmas;
        self.core.timesteps = timesteps;
        self.first = None;
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
        let sigmas = &self.core.sigmas;
        let (sigma, next) = if self.first.is_none() { (sigmas[i], sigmas[i + 1]) } else { (sigmas[i - 1], sigmas[i]) };
        // The predictor reads the model at σ, the corrector at σ_next.
        let sigma_input = if self.first.is_none() { sigma } else { next };
        let mut x0 = sigma_x0(self.prediction, sigma_input, sample, model_output);
        if let Some(r) = self.clip_sample_range {
            x0.iter_mut().for_each(|v| *v = v.clamp(-r, r));
        }
        let prev_sample = match self.first.take() {
            None => {
                let derivative: Vec<f32> = sample.iter().zip(&x0).map(|(x, p)| (x - p) / sigma).collect();
                let dt = next - sigma;
                let prev = sample.iter().zip(&derivative).map(|(x, d)| x + d * dt).collect();
                self.first = Some((derivative, dt, sample.to_vec()));
                prev
            }
            Some((d1, dt, first_sample)) => (0..sample.len())
                .map(|k| {
                    let d2 = (sample[k] - x0[k]) / next;
                    first_sample[k] + (d1[k] + d2) / 2.0 * dt
                })
                .collect(),
        };
        self.core.index.step = Some(i + 1);
        Ok(StepOutput { prev_sample, pred_original_sample: x0 })
    }

    fn add_noise(&self, x0: &[f32], noise: &[f32], t: f64) -> Result<Vec<f32>> {
        self.core.add_noise(x0, noise, t, CLASS)
    }

    fn order(&self) -> usize {
        2
    }

    fn set_begin_index(&mut self, begin: usize) -> Result<()> {
        self.core.set_begin_index(begin)
    }
}
