//! `DPMSolverMultistepScheduler`: DPM-Solver / DPM-Solver++ and their SDE variants, orders 1–3
//! over the stored model outputs (the update formulas are in `dpm_updates`).

use super::config::{check_len, need_noise, Cfg, NoiseSchedule, Prediction};
use super::dpm_updates::{differences, update, Algorithm};
use super::multistep::{convert_model_output, read_thresholding, Conversion, MultistepSigmas, Ramp};
use super::{DiffusersScheduler, StepOutput};
use crate::error::{Error, Result};

const CLASS: &str = "DPMSolverMultistepScheduler";

#[derive(Clone, Debug)]
pub struct DpmSolverMultistepScheduler {
    pub sigmas: MultistepSigmas,
    solver_order: usize,
    prediction: Prediction,
    /// (ratio, max) of dynamic thresholding, when on.
    thresholding: Option<(f64, f64)>,
    algorithm: Algorithm,
    midpoint: bool,
    lower_order_final: bool,
    euler_at_final: bool,
    final_sigma_min: bool,
    learned_variance: bool,
    // The run's state: the last `solver_order` converted model outputs (newest last).
    model_outputs: Vec<Option<Vec<f32>>>,
    lower_order_nums: usize,
    /// Batch items in the flat sample (dynamic thresholding is per item).
    batch: usize,
}

impl DpmSolverMultistepScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let schedule = NoiseSchedule::read(cfg, 0.0001, 0.02, &["linear", "scaled_linear", "squaredcos_cap_v2"], true)?.terminal_not_zero();
        let solver_order = cfg.usize("solver_order", 2)?;
        if !(1..=3).contains(&solver_order) {
            return Err(Error::Scheduler(format!("`solver_order` = {solver_order}: expected 1, 2 or 3")));
        }
        // diffusers maps the other families' names onto its own: deis → dpmsolver++,
        // logrho/bh1/bh2 → midpoint.
        let algorithm =
            match cfg.choice("algorithm_type", "dpmsolver++", &["dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++", "deis"])? {
                "dpmsolver" => Algorithm::DpmSolver,
                "sde-dpmsolver" => Algorithm::SdeDpmSolver,
                "sde-dpmsolver++" => Algorithm::SdeDpmSolverPlusPlus,
                _ => Algorithm::DpmSolverPlusPlus,
            };
        let midpoint = cfg.choice("solver_type", "midpoint", &["midpoint", "heun", "logrho", "bh1", "bh2"])? != "heun";
        let final_sigma_min = cfg.choice("final_sigmas_type", "zero", &["zero", "sigma_min"])? == "sigma_min";
        if !algorithm.predicts_x0() && !final_sigma_min {
            return Err(Error::Scheduler(
                "`final_sigmas_type` = \"zero\" is not supported by `algorithm_type` dpmsolver / sde-dpmsolver (diffusers refuses it): use \"sigma_min\"".into(),
            ));
        }
        if algorithm == Algorithm::SdeDpmSolver && solver_order == 3 {
            return Err(Error::Scheduler("`solver_order` = 3 with `algorithm_type` = \"sde-dpmsolver\" has no update in diffusers".into()));
        }
        for key in ["use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting"] {
            cfg.refuse_true(key)?;
        }
        let ramps = [
            (cfg.bool("use_karras_sigmas", false)?, Ramp::Karras),
            (cfg.bool("use_exponential_sigmas", false)?, Ramp::Exponential),
            (cfg.bool("use_lu_lambdas", false)?, Ramp::Lu),
        ];
        if ramps[..2].iter().filter(|r| r.0).count() > 1 {
            return Err(Error::Scheduler("only one of `use_exponential_sigmas`, `use_karras_sigmas` can be true".into()));
        }
        let thresholding = read_thresholding(cfg)?;
        // The first of karras, lu, exponential that is on, in diffusers' order of checks.
        let ramp = [ramps[0], ramps[2], ramps[1]].iter().find(|r| r.0).map_or(Ramp::Interpolated, |r| r.1);
        let mut sigmas = MultistepSigmas::new(schedule, cfg, ramp, final_sigma_min)?;
        sigmas.lambda_min_clipped = cfg.f64("lambda_min_clipped", f64::NEG_INFINITY)?;
        sigmas.round_unless_cosine = true;
        let variance = cfg.get_str_or_null("variance_type", &["learned", "learned_range"])?;
        Ok(DpmSolverMultistepScheduler {
            sigmas,
            solver_order,
            prediction: Prediction::read(cfg, &["epsilon", "sample", "v_prediction"])?,
            thresholding,
            algorithm,
            midpoint,
            lower_order_final: cfg.bool("lower_order_final", true)?,
            euler_at_final: cfg.bool("euler_at_final", false)?,
            final_sigma_min,
            learned_variance: variance.is_some(),
            model_outputs: vec![None; solver_order],
            lower_order_nums: 0,
            batch: 1,
        })
    }
}

impl DiffusersScheduler for DpmSolverMultistepScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        self.sigmas.set(n, CLASS)?;
        self.model_outputs = vec![None; self.solver_order];
        self.lower_order_nums = 0;
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.sigmas.timesteps
    }

    /// With a learned `variance_type` the model output may hold 2× the sample's values
    /// (prediction, then variance: one flat batch item); the variance is dropped, as diffusers does.
    fn step(&mut self, model_output: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
        let n = sample.len();
        let model_output = if self.learned_variance && model_output.len() == 2 * n { &model_output[..n] } else { model_output };
        check_len("model_output", model_output, n)?;
        let i = self.sigmas.current(t, CLASS)?;
        let steps = self.sigmas.timesteps.len();
        let noise = need_noise(noise, self.algorithm.is_sde(), n, CLASS, t)?.filter(|_| self.algorithm.is_sde());
        let lower_order_final = i == steps - 1 && (self.euler_at_final || (self.lower_order_final && steps < 15) || !self.final_sigma_min);
        let lower_order_second = i + 2 == steps && self.lower_order_final && steps < 15;
        let conversion = Conversion {
            prediction: self.prediction,
            predicts_x0: self.algorithm.predicts_x0(),
            thresholding: self.thresholding,
            batch: self.batch,
        };
        let converted = convert_model_output(conversion, model_output, sample, self.sigmas.sigmas[i], CLASS)?;
        self.model_outputs.rotate_left(1);
        *self.model_outputs.last_mut().expect("order ≥ 1") = Some(converted.clone());
        let order = if self.solver_order == 1 || self.lower_order_nums < 1 || lower_order_final {
            1
        } else if self.solver_order == 2 || self.lower_order_nums < 2 || lower_order_second {
            2
        } else {
            3
        };
        let history: Vec<&[f32]> = self.model_outputs.iter().rev().take(order).map(|m| m.as_deref().expect("filled")).collect();
        let sigmas = &self.sigmas.sigmas;
        let prev_sigmas: Vec<f32> = (0..order).map(|k| sigmas[i - k]).collect();
        let d = differences(order, &history, sigmas[i + 1], &prev_sigmas);
        let prev_sample = update(self.algorithm, self.midpoint, order, sigmas[i + 1], sigmas[i]).apply(sample, &d, noise);
        if self.lower_order_nums < self.solver_order {
            self.lower_order_nums += 1;
        }
        self.sigmas.step_index = Some(i + 1);
        // diffusers returns no x0; the data prediction is it for the "++" solvers.
        let pred_original_sample = if self.algorithm.predicts_x0() { converted } else { Vec::new() };
        Ok(StepOutput { prev_sample, pred_original_sample })
    }

    /// α_t·x0 + σ_t·noise at the σ of timestep t.
    fn add_noise(&self, x0: &[f32], noise: &[f32], t: f64) -> Result<Vec<f32>> {
        self.sigmas.add_noise(x0, noise, t, CLASS)
    }

    fn order(&self) -> usize {
        1
    }

    fn set_begin_index(&mut self, begin: usize) -> Result<()> {
        self.sigmas.begin_index = Some(begin);
        Ok(())
    }

    fn set_batch_size(&mut self, batch: usize) -> Result<()> {
        self.batch = super::checked_batch(batch)?;
        Ok(())
    }
}
