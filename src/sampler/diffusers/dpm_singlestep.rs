//! `DPMSolverSinglestepScheduler`: DPM-Solver(-++) in its singlestep form (Lu et al. 2022,
//! Algorithms 1–2): the steps are grouped in blocks of orders [1, 2, 3, 1, 2, 3, ...], each block
//! stepping from the sample at its start with the model outputs taken inside it.

use super::config::{check_len, need_noise, Cfg, NoiseSchedule, Prediction};
use super::dpm_updates::{alpha_sigma_lambda, update, Algorithm};
use super::multistep::{convert_model_output, read_thresholding, Conversion, MultistepSigmas, Ramp};
use super::sigmas::{SigmaRamp, Spacing};
use super::{DiffusersScheduler, StepOutput};
use crate::error::{Error, Result};

const CLASS: &str = "DPMSolverSinglestepScheduler";

#[derive(Clone, Debug)]
pub struct DpmSolverSinglestepScheduler {
    pub sigmas: MultistepSigmas,
    solver_order: usize,
    conversion: Conversion,
    algorithm: Algorithm,
    midpoint: bool,
    lower_order_final: bool,
    learned_variance: bool,
    order_list: Vec<usize>,
    // The run's state: the last `solver_order` converted outputs and the block's start sample.
    model_outputs: Vec<Option<Vec<f32>>>,
    sample: Option<Vec<f32>>,
}

impl DpmSolverSinglestepScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let schedule = NoiseSchedule::read(cfg, 0.0001, 0.02, &["linear", "scaled_linear", "squaredcos_cap_v2"], false)?;
        let solver_order = cfg.usize("solver_order", 2)?;
        if !(1..=3).contains(&solver_order) {
            return Err(Error::Scheduler(format!("`solver_order` = {solver_order}: expected 1, 2 or 3")));
        }
        let algorithm = match cfg.choice("algorithm_type", "dpmsolver++", &["dpmsolver", "dpmsolver++", "sde-dpmsolver++", "deis"])? {
            "dpmsolver" => Algorithm::DpmSolver,
            "sde-dpmsolver++" => Algorithm::SdeDpmSolverPlusPlus,
            _ => Algorithm::DpmSolverPlusPlus,
        };
        let midpoint = cfg.choice("solver_type", "midpoint", &["midpoint", "heun", "logrho", "bh1", "bh2"])? != "heun";
        let final_sigma_min = cfg.choice("final_sigmas_type", "zero", &["zero", "sigma_min"])? == "sigma_min";
        if !algorithm.predicts_x0() && !final_sigma_min {
            return Err(Error::Scheduler(
                "`final_sigmas_type` = \"zero\" is not supported by `algorithm_type` dpmsolver (diffusers refuses it): use \"sigma_min\""
                    .into(),
            ));
        }
        let thresholding = read_thresholding(cfg)?;
        if thresholding.is_some() && !algorithm.predicts_x0() {
            return Err(Error::Scheduler(
                "`thresholding` = true with `algorithm_type` = \"dpmsolver\" is not implemented (diffusers indexes α_t by an undefined timestep there)".into(),
            ));
        }
        for key in ["use_flow_sigmas", "use_dynamic_shifting"] {
            cfg.refuse_true(key)?;
        }
        let ramp = match SigmaRamp::read(cfg, true)? {
            SigmaRamp::Karras => Ramp::Karras,
            SigmaRamp::Exponential => Ramp::Exponential,
            SigmaRamp::Interpolated => Ramp::Interpolated,
        };
        let mut sigmas = MultistepSigmas::new(schedule, cfg, ramp, final_sigma_min)?;
        // This class always spaces by linspace and reads no steps_offset.
        sigmas.spacing = Spacing::Linspace;
        sigmas.steps_offset = 0;
        sigmas.lambda_min_clipped = cfg.f64("lambda_min_clipped", f64::NEG_INFINITY)?;
        Ok(DpmSolverSinglestepScheduler {
            sigmas,
            solver_order,
            conversion: Conversion {
                prediction: Prediction::read(cfg, &["epsilon", "sample", "v_prediction"])?,
                predicts_x0: algorithm.predicts_x0(),
                thresholding,
                batch: 1,
            },
            algorithm,
            midpoint,
            lower_order_final: cfg.bool("lower_order_final", false)?,
            learned_variance: cfg.get_str_or_null("variance_type", &["learned", "learned_range"])?.is_some(),
            order_list: Vec::new(),
            model_outputs: vec![None; solver_order],
            sample: None,
        })
    }

    /// `get_order_list`: the order of each step.
    fn order_list(&self, steps: usize) -> Vec<usize> {
        let order = self.solver_order;
        let repeat = |pattern: &[usize], times: usize| pattern.iter().copied().cycle().take(pattern.len() * times).collect::<Vec<_>>();
        let mut orders = match (self.lower_order_final, order) {
            (true, 3) => match steps % 3 {
                0 => [repeat(&[1, 2, 3], (steps / 3).saturating_sub(1)), vec![1, 2, 1]].concat(),
                1 => [repeat(&[1, 2, 3], steps / 3), vec![1]].concat(),
                _ => [repeat(&[1, 2, 3], steps / 3), vec![1, 2]].concat(),
            },
            (true, 2) if steps.is_multiple_of(2) => [repeat(&[1, 2], (steps / 2).saturating_sub(1)), vec![1, 1]].concat(),
            (true, 2) => [repeat(&[1, 2], steps / 2), vec![1]].concat(),
            (false, 3) => repeat(&[1, 2, 3], steps / 3),
            (false, 2) => repeat(&[1, 2], steps / 2),
            _ => vec![1; steps],
        };
        if !self.sigmas.final_sigma_min {
            if let Some(last) = orders.last_mut() {
                *last = 1;
            }
        }
        orders
    }
}

impl DiffusersScheduler for DpmSolverSinglestepScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        self.sigmas.set(n, CLASS)?;
        self.model_outputs = vec![None; self.solver_order];
        self.sample = None;
        // diffusers switches lower_order_final on for good (register_to_config) when the steps do
        // not fill whole blocks or the final σ is 0.
        if !self.lower_order_final && (!n.is_multiple_of(self.solver_order) || !self.sigmas.final_sigma_min) {
            self.lower_order_final = true;
        }
        self.order_list = self.order_list(n);
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.sigmas.timesteps
    }

    fn step(&mut self, model_output: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
        let n = sample.len();
        let model_output = if self.learned_variance && model_output.len() == 2 * n { &model_output[..n] } else { model_output };
        check_len("model_output", model_output, n)?;
        let i = self.sigmas.current(t, CLASS)?;
        let sde = self.algorithm.is_sde();
        let noise = need_noise(noise, sde, n, CLASS, t)?.filter(|_| sde);
        let converted = convert_model_output(self.conversion, model_output, sample, self.sigmas.sigmas[i], CLASS)?;
        self.model_outputs.rotate_left(1);
        *self.model_outputs.last_mut().expect("order ≥ 1") = Some(converted.clone());
        let mut order = *self.order_list.get(i).ok_or_else(|| Error::Scheduler(format!("{CLASS}: step {i} has no order")))?;
        while self.model_outputs[self.solver_order - order].is_none() {
            order -= 1;
        }
        if order == 1 {
            self.sample = Some(sample.to_vec());
        }
        let s = &self.sigmas.sigmas;
        let m = |k: usize| self.model_outputs[self.solver_order - 1 - k].as_deref().expect("filled");
        let lambda = |j: usize| alpha_sigma_lambda(s[j]).2;
        let lambda_t = lambda(i + 1);
        // The block starts `order − 1` steps back: its σ and sample are the update's base.
        let base = i + 1 - order;
        let h = lambda_t - lambda(base);
        let (coeffs, d): (Vec<f32>, Vec<Vec<f32>>) = match order {
            1 => (update(self.algorithm, self.midpoint, 1, s[i + 1], s[i]).terms, vec![m(0).to_vec()]),
            2 => {
                let r0 = (lambda(i) - lambda(base)) / h;
                let inv = 1.0 / r0;
                let d1 = m(0).iter().zip(m(1)).map(|(a, b)| inv * (a - b)).collect();
                (update(self.algorithm, self.midpoint, 2, s[i + 1], s[base]).terms, vec![m(1).to_vec(), d1])
            }
            _ => {
                let (r0, r1) = ((lambda(i) - lambda(base)) / h, (lambda(i - 1) - lambda(base)) / h);
                let (inv0, inv1) = (1.0 / r0, 1.0 / r1);
                let d1_0: Vec<f32> = m(1).iter().zip(m(2)).map(|(a, b)| inv1 * (a - b)).collect();
                let d1_1: Vec<f32> = m(0).iter().zip(m(2)).map(|(a, b)| inv0 * (a - b)).collect();
                let terms = update(self.algorithm, false, 3, s[i + 1], s[base]).terms;
                if self.midpoint {
                    // The midpoint form uses D1_1 alone, with the heun form's D1 coefficient.
                    (terms[..2].to_vec(), vec![m(2).to_vec(), d1_1])
                } else {
                    let d1 = d1_0.iter().zip(&d1_1).map(|(a, b)| (r0 * a - r1 * b) / (r0 - r1)).collect();
                    let d2 = d1_0.iter().zip(&d1_1).map(|(a, b)| 2.0 * (b - a) / (r0 - r1)).collect();
                    (terms, vec![m(2).to_vec(), d1, d2])
                }
            }
        };
        let mut u = update(self.algorithm, self.midpoint, 1, s[i + 1], s[base]);
        u.terms = coeffs;
        let start = self.sample.as_deref().ok_or_else(|| Error::Scheduler(format!("{CLASS}: no block start sample")))?;
        let prev_sample = u.apply(start, &d, noise);
        self.sigmas.step_index = Some(i + 1);
        let pred_original_sample = if self.algorithm.predicts_x0() { converted } else { Vec::new() };
        Ok(StepOutput { prev_sample, pred_original_sample })
    }

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
        self.conversion.batch = super::checked_batch(batch)?;
        Ok(())
    }
}
