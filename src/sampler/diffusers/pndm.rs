//! `PNDMScheduler`: pseudo numerical methods for diffusion models (Liu et al. 2022). Runge-Kutta
//! warm-up steps (PRK, four model evaluations per step over the last timesteps of the schedule)
//! then linear multistep steps (PLMS, the Adams-Bashforth combination of up to four past model
//! outputs); with `skip_prk_steps` the warm-up is replaced by PLMS's own lower-order start.

use super::config::{check_len, Cfg, NoiseSchedule, Prediction};
use super::{integer_timestep, DiffusersScheduler, StepOutput};
use crate::error::{Error, Result};
use crate::sampler::diffusers::sigmas::Spacing;

#[derive(Clone, Debug)]
pub struct PndmScheduler {
    pub schedule: NoiseSchedule,
    prediction: Prediction,
    spacing: Spacing,
    steps_offset: usize,
    skip_prk_steps: bool,
    final_alpha_cumprod: f32,
    num_inference_steps: Option<usize>,
    prk_timesteps: Vec<i64>,
    plms_timesteps: Vec<i64>,
    timesteps: Vec<f64>,
    // The run's state, as diffusers names it.
    counter: usize,
    cur_model_output: Option<Vec<f32>>,
    cur_sample: Option<Vec<f32>>,
    ets: Vec<Vec<f32>>,
}

/// PNDM's order: four PRK stages per warm-up step.
const PNDM_ORDER: usize = 4;

impl PndmScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let schedule = NoiseSchedule::read(cfg, 0.0001, 0.02, &["linear", "scaled_linear", "squaredcos_cap_v2"], false)?;
        let set_alpha_to_one = cfg.bool("set_alpha_to_one", false)?;
        let final_alpha_cumprod = if set_alpha_to_one { 1.0 } else { schedule.alphas_cumprod[0] };
        Ok(PndmScheduler {
            prediction: Prediction::read(cfg, &["epsilon", "v_prediction"])?,
            spacing: Spacing::read(cfg, "leading")?,
            steps_offset: cfg.usize("steps_offset", 0)?,
            skip_prk_steps: cfg.bool("skip_prk_steps", false)?,
            final_alpha_cumprod,
            schedule,
            num_inference_steps: None,
            prk_timesteps: Vec::new(),
            plms_timesteps: Vec::new(),
            timesteps: Vec::new(),
            counter: 0,
            cur_model_output: None,
            cur_sample: None,
            ets: Vec::new(),
        })
    }

    /// The PRK timesteps (each visited four times in pairs), then the PLMS ones.
    pub fn prk_timesteps(&self) -> &[i64] {
        &self.prk_timesteps
    }

    pub fn plms_timesteps(&self) -> &[i64] {
        &self.plms_timesteps
    }

    fn n(&self) -> Result<usize> {
        self.num_inference_steps.ok_or_else(|| Error::Scheduler("PNDMScheduler: call set_timesteps before step".into()))
    }

    fn alpha(&self, t: i64) -> Result<f32> {
        usize::try_from(t)
            .ok()
            .and_then(|i| self.schedule.alphas_cumprod.get(i).copied())
            .ok_or_else(|| Error::Scheduler(format!("PNDMScheduler: timestep {t} outside 0..{}", self.schedule.num_train_timesteps())))
    }

    /// `_get_prev_sample`: formula (9) of the paper, x_{t−δ} from x_t and ε.
    fn prev_sample(&self, sample: &[f32], t: i64, prev_t: i64, model_output: &[f32]) -> Result<Vec<f32>> {
        let a = self.alpha(t)?;
        let a_prev = if prev_t >= 0 { self.alpha(prev_t)? } else { self.final_alpha_cumprod };
        let (b, b_prev) = (1.0 - a, 1.0 - a_prev);
        let (sa, sb) = (a.sqrt(), b.sqrt());
        let sample_coeff = (a_prev / a).sqrt();
        let denom = a * b_prev.sqrt() + (a * b * a_prev).sqrt();
        let diff = a_prev - a;
        Ok(sample
            .iter()
            .zip(model_output)
            .map(|(&x, &m)| {
                let eps = match self.prediction {
                    Prediction::VPrediction => sa * m + sb * x,
                    _ => m,
                };
                sample_coeff * x - diff * eps / denom
            })
            .collect())
    }

    /// `step_prk`: one of the four Runge-Kutta stages of a warm-up step.
    pub fn step_prk(&mut self, model_output: &[f32], t: i64, sample: &[f32]) -> Result<Vec<f32>> {
        let half = (self.schedule.num_train_timesteps() / self.n()?) / 2;
        let diff_to_prev = if self.counter % 2 == 1 { 0 } else { half as i64 };
        let prev_t = t - diff_to_prev;
        let t = *self.prk_timesteps.get(self.counter / 4 * 4).ok_or_else(|| {
            Error::Scheduler(format!(
                "PNDMScheduler: PRK stage {} of {} (call set_timesteps again)",
                self.counter,
                self.prk_timesteps.len()
            ))
        })?;
        let acc = |cur: Option<Vec<f32>>, w: f32| -> Vec<f32> {
            match cur {
                None => model_output.iter().map(|m| w * m).collect(),
                Some(c) => c.iter().zip(model_output).map(|(c, m)| c + w * m).collect(),
            }
        };
        let mut eps = model_output.to_vec();
        match self.counter % 4 {
            0 => {
                self.cur_model_output = Some(acc(self.cur_model_output.take(), (1.0f64 / 6.0) as f32));
                self.ets.push(model_output.to_vec());
                self.cur_sample = Some(sample.to_vec());
            }
            1 | 2 => self.cur_model_output = Some(acc(self.cur_model_output.take(), (1.0f64 / 3.0) as f32)),
            _ => eps = acc(self.cur_model_output.take(), (1.0f64 / 6.0) as f32),
        }
        let cur_sample = self.cur_sample.clone().unwrap_or_else(|| sample.to_vec());
        let prev = self.prev_sample(&cur_sample, t, prev_t, &eps)?;
        self.counter += 1;
        Ok(prev)
    }

    /// `step_plms`: the linear multistep step (Adams-Bashforth over the stored model outputs).
    pub fn step_plms(&mut self, model_output: &[f32], t: i64, sample: &[f32]) -> Result<Vec<f32>> {
        let n = self.n()?;
        if !self.skip_prk_steps && self.ets.len() < 3 {
            return Err(Error::Scheduler(
                "PNDMScheduler: step_plms runs only after the PRK warm-up (12 step_prk calls) or with `skip_prk_steps` = true".into(),
            ));
        }
        let stride = (self.schedule.num_train_timesteps() / n) as i64;
        let (mut t, mut prev_t) = (t, t - stride);
        if self.counter != 1 {
            let keep = self.ets.len().saturating_sub(3);
            self.ets.drain(..keep);
            self.ets.push(model_output.to_vec());
        } else {
            // The second call of a PRK-less start revisits the first timestep (a Heun-like
            // second evaluation): step from t + stride to t.
            prev_t = t;
            t += stride;
        }
        let e = |k: usize| &self.ets[self.ets.len() - k];
        let mut sample = sample.to_vec();
        let eps: Vec<f32> = match (self.ets.len(), self.counter) {
            (1, 0) => {
                self.cur_sample = Some(sample.clone());
                model_output.to_vec()
            }
            (1, 1) => {
                let eps = model_output.iter().zip(e(1)).map(|(m, e1)| (m + e1) / 2.0).collect();
                sample = self.cur_sample.take().ok_or_else(|| Error::Scheduler("PNDMScheduler: no stored sample".into()))?;
                eps
            }
            (2, _) => (0..sample.len()).map(|i| (3.0 * e(1)[i] - e(2)[i]) / 2.0).collect(),
            (3, _) => (0..sample.len()).map(|i| (23.0 * e(1)[i] - 16.0 * e(2)[i] + 5.0 * e(3)[i]) / 12.0).collect(),
            _ => {
                let w = (1.0f64 / 24.0) as f32;
                (0..sample.len()).map(|i| w * (55.0 * e(1)[i] - 59.0 * e(2)[i] + 37.0 * e(3)[i] - 9.0 * e(4)[i])).collect()
            }
        };
        let prev = self.prev_sample(&sample, t, prev_t, &eps)?;
        self.counter += 1;
        Ok(prev)
    }
}

impl DiffusersScheduler for PndmScheduler {
    fn class_name(&self) -> &'static str {
        "PNDMScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let t = self.schedule.num_train_timesteps();
        if n == 0 || n > t {
            return Err(Error::Scheduler(format!("PNDMScheduler: {n} inference steps: must be from 1 to num_train_timesteps = {t}")));
        }
        if !self.skip_prk_steps && n < PNDM_ORDER {
            return Err(Error::Scheduler(format!(
                "PNDMScheduler: `num_inference_steps` must be >= {PNDM_ORDER} when `skip_prk_steps` is false (got {n})"
            )));
        }
        // `_timesteps`, ascending.
        let ts: Vec<i64> = match self.spacing {
            Spacing::Linspace => {
                crate::sampler::solvers::linspace(0.0, (t - 1) as f64, n).iter().map(|v| v.round_ties_even() as i64).collect()
            }
            Spacing::Leading => (0..n).map(|i| (i * (t / n) + self.steps_offset) as i64).collect(),
            Spacing::Trailing => {
                let ratio = t as f64 / n as f64;
                let len = (t as f64 / ratio).ceil() as usize;
                (0..len).rev().map(|i| (t as f64 - i as f64 * ratio).round_ties_even() as i64 - 1).collect()
            }
        };
        if let Some(bad) = ts.iter().find(|&&v| v < 0 || v as usize >= t) {
            return Err(Error::Scheduler(format!("PNDMScheduler: timestep {bad} outside 0..{t} (`steps_offset` too large?)")));
        }
        let len = ts.len();
        if self.skip_prk_steps {
            // The second-to-last timestep twice: PLMS's start evaluates it again.
            self.prk_timesteps = Vec::new();
            let mut plms: Vec<i64> = ts[..len - 1].to_vec();
            if len >= 2 {
                plms.push(ts[len - 2]);
            }
            plms.push(ts[len - 1]);
            plms.reverse();
            self.plms_timesteps = plms;
        } else {
            let half = (t / n / 2) as i64;
            // _ts[-4:].repeat(2) + tile([0, half], 4), then [:-1].repeat(2)[1:-1], reversed.
            let base: Vec<i64> = ts[len - PNDM_ORDER..].iter().flat_map(|&v| [v, v + half]).collect();
            let doubled: Vec<i64> = base[..base.len() - 1].iter().flat_map(|&v| [v, v]).collect();
            self.prk_timesteps = doubled[1..doubled.len() - 1].iter().rev().copied().collect();
            self.plms_timesteps = ts[..len - 3].iter().rev().copied().collect();
        }
        let all: Vec<i64> = self.prk_timesteps.iter().chain(&self.plms_timesteps).copied().collect();
        self.timesteps = all.iter().map(|&v| v as f64).collect();
        self.num_inference_steps = Some(n);
        self.ets.clear();
        self.counter = 0;
        self.cur_model_output = None;
        self.cur_sample = None;
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(&mut self, model_output: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
        check_len("model_output", model_output, sample.len())?;
        if let Some(z) = noise {
            check_len("noise", z, sample.len())?;
        }
        let t = integer_timestep(t, "PNDMScheduler")?;
        let prev_sample = if self.counter < self.prk_timesteps.len() && !self.skip_prk_steps {
            self.step_prk(model_output, t, sample)?
        } else {
            self.step_plms(model_output, t, sample)?
        };
        Ok(StepOutput { prev_sample, pred_original_sample: Vec::new() })
    }

    fn add_noise(&self, x0: &[f32], noise: &[f32], t: f64) -> Result<Vec<f32>> {
        self.schedule.add_noise_vp(x0, noise, t)
    }

    fn order(&self) -> usize {
        1
    }
}
