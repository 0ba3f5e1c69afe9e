//! `EDMDPMSolverMultistepScheduler`: DPM-Solver++ (and its SDE variant) in the EDM
//! parametrization: α_t = 1, σ_t = σ, the model's x0 from EDM's preconditioning.

use super::config::{check_len, need_noise, threshold_sample, Cfg};
use super::dpm_updates::{differences_in, edm_alpha_sigma_lambda, update_in, Algorithm};
use super::edm::Edm;
use super::multistep::read_thresholding;
use super::{DiffusersScheduler, StepOutput};
use crate::error::{Error, Result};

const CLASS: &str = "EDMDPMSolverMultistepScheduler";

#[derive(Clone, Debug)]
pub struct EdmDpmSolverMultistepScheduler {
    pub edm: Edm,
    solver_order: usize,
    thresholding: Option<(f64, f64)>,
    algorithm: Algorithm,
    midpoint: bool,
    lower_order_final: bool,
    euler_at_final: bool,
    pub sigmas: Vec<f32>,
    timesteps: Vec<f64>,
    // The run's state.
    model_outputs: Vec<Option<Vec<f32>>>,
    lower_order_nums: usize,
    step_index: Option<usize>,
    begin_index: Option<usize>,
    batch: usize,
}

impl EdmDpmSolverMultistepScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let solver_order = cfg.usize("solver_order", 2)?;
        if !(1..=3).contains(&solver_order) {
            return Err(Error::Scheduler(format!("`solver_order` = {solver_order}: expected 1, 2 or 3")));
        }
        let algorithm = match cfg.choice("algorithm_type", "dpmsolver++", &["dpmsolver++", "sde-dpmsolver++", "deis"])? {
            "sde-dpmsolver++" => Algorithm::SdeDpmSolverPlusPlus,
            _ => Algorithm::DpmSolverPlusPlus,
        };
        if algorithm.is_sde() && solver_order == 3 {
            return Err(Error::Scheduler(
                "`solver_order` = 3 with `algorithm_type` = \"sde-dpmsolver++\" has no update in diffusers".into(),
            ));
        }
        let mut s = EdmDpmSolverMultistepScheduler {
            edm: Edm::read(cfg, &["epsilon", "v_prediction"])?,
            solver_order,
            thresholding: read_thresholding(cfg)?,
            algorithm,
            midpoint: cfg.choice("solver_type", "midpoint", &["midpoint", "heun", "logrho", "bh1", "bh2"])? != "heun",
            lower_order_final: cfg.bool("lower_order_final", true)?,
            euler_at_final: cfg.bool("euler_at_final", false)?,
            sigmas: Vec::new(),
            timesteps: Vec::new(),
            model_outputs: vec![None; solver_order],
            lower_order_nums: 0,
            step_index: None,
            begin_index: None,
            batch: 1,
        };
        s.set_timesteps(cfg.usize("num_train_timesteps", 1000)?)?;
        Ok(s)
    }

    /// `index_for_timestep`: the second match when t occurs twice, the last step when absent.
    fn index_for_timestep(&self, t: f64) -> usize {
        let hits: Vec<usize> = self.timesteps.iter().enumerate().filter(|(_, &v)| v == t).map(|(i, _)| i).collect();
        match hits.len() {
            0 => self.timesteps.len() - 1,
            1 => hits[0],
            _ => hits[1],
        }
    }

    fn current(&mut self, t: f64) -> Result<usize> {
        let i = match self.step_index {
            Some(i) => i,
            None => self.begin_index.unwrap_or_else(|| self.index_for_timestep(t)),
        };
        if i >= self.timesteps.len() {
            return Err(Error::Scheduler(format!("{CLASS}: step {i} is past the last step (call set_timesteps again)")));
        }
        self.step_index = Some(i);
        Ok(i)
    }
}

impl DiffusersScheduler for EdmDpmSolverMultistepScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        if n < 2 {
            return Err(Error::Scheduler(format!("{CLASS}: {n} inference steps: need at least 2 (the σ ramp's two ends)")));
        }
        let sigmas = self.edm.sigmas(n, false);
        self.timesteps = Edm::timesteps(&sigmas);
        let last = if self.edm.final_sigma_min { self.edm.sigma_min as f32 } else { 0.0 };
        self.sigmas = sigmas.into_iter().chain([last]).collect();
        self.model_outputs = vec![None; self.solver_order];
        self.lower_order_nums = 0;
        self.step_index = None;
        self.begin_index = None;
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
        let n = sample.len();
        check_len("model_output", model_output, n)?;
        let i = self.current(t)?;
        let steps = self.timesteps.len();
        let sde = self.algorithm.is_sde();
        let noise = need_noise(noise, sde, n, CLASS, t)?.filter(|_| sde);
        let lower_order_final =
            i + 1 == steps && (self.euler_at_final || (self.lower_order_final && steps < 15) || !self.edm.final_sigma_min);
        let lower_order_second = i + 2 == steps && self.lower_order_final && steps < 15;
        let mut x0 = self.edm.precondition_outputs(sample, model_output, self.sigmas[i]);
        if let Some((ratio, max)) = self.thresholding {
            if !n.is_multiple_of(self.batch) {
                return Err(Error::Input(format!("{CLASS}: a sample of {n} values is not {} equal batch items", self.batch)));
            }
            threshold_sample(&mut x0, ratio, max, self.batch);
        }
        self.model_outputs.rotate_left(1);
        *self.model_outputs.last_mut().expect("order ≥ 1") = Some(x0.clone());
        let order = if self.solver_order == 1 || self.lower_order_nums < 1 || lower_order_final {
            1
        } else if self.solver_order == 2 || self.lower_order_nums < 2 || lower_order_second {
            2
        } else {
            3
        };
        let history: Vec<&[f32]> = self.model_outputs.iter().rev().take(order).map(|m| m.as_deref().expect("filled")).collect();
        let s = &self.sigmas;
        let prev_sigmas: Vec<f32> = (0..order).map(|k| s[i - k]).collect();
        let d = differences_in(edm_alpha_sigma_lambda, order, &history, s[i + 1], &prev_sigmas);
        let u = update_in(edm_alpha_sigma_lambda, self.algorithm, self.midpoint, order, s[i + 1], s[i]);
        let prev_sample = u.apply(sample, &d, noise);
        if self.lower_order_nums < self.solver_order {
            self.lower_order_nums += 1;
        }
        self.step_index = Some(i + 1);
        Ok(StepOutput { prev_sample, pred_original_sample: x0 })
    }

    fn add_noise(&self, x0: &[f32], noise: &[f32], t: f64) -> Result<Vec<f32>> {
        check_len("noise", noise, x0.len())?;
        let i = match (self.begin_index, self.step_index) {
            (None, _) => self.index_for_timestep(t),
            (Some(_), Some(s)) => s,
            (Some(b), None) => b,
        };
        Ok(x0.iter().zip(noise).map(|(x, z)| x + z * self.sigmas[i]).collect())
    }

    fn order(&self) -> usize {
        1
    }

    fn set_begin_index(&mut self, begin: usize) -> Result<()> {
        self.begin_index = Some(begin);
        Ok(())
    }

    fn set_batch_size(&mut self, batch: usize) -> Result<()> {
        self.batch = super::checked_batch(batch)?;
        Ok(())
    }
}
