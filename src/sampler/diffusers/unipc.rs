//! `UniPCMultistepScheduler`: UniPC (Zhao et al. 2023), the unified predictor-corrector: after each
//! model evaluation the corrector UniC refines the previous step's result with the new output, then
//! the predictor UniP steps on, both with B(h) = h ("bh1") or e^h − 1 ("bh2"), in data (x0) or
//! noise (ε) prediction.

use super::config::{check_len, Cfg, NoiseSchedule, Prediction};
use super::dpm_updates::alpha_sigma_lambda;
use super::multistep::{convert_model_output, read_thresholding, Conversion, MultistepSigmas, Ramp};
use super::sigmas::SigmaRamp;
use super::{DiffusersScheduler, StepOutput};
use crate::error::{Error, Result};

const CLASS: &str = "UniPCMultistepScheduler";

#[derive(Clone, Debug)]
pub struct UniPcMultistepScheduler {
    pub sigmas: MultistepSigmas,
    solver_order: usize,
    conversion: Conversion,
    bh1: bool,
    lower_order_final: bool,
    disable_corrector: Vec<usize>,
    // The run's state, as diffusers names it.
    model_outputs: Vec<Option<Vec<f32>>>,
    lower_order_nums: usize,
    last_sample: Option<Vec<f32>>,
    this_order: usize,
}

/// Solves A·x = b (n ≤ solver_order) by Gaussian elimination with partial pivoting in f32, as
/// LAPACK's sgesv behind torch.linalg.solve.
fn solve(mut a: Vec<Vec<f32>>, mut b: Vec<f32>) -> Vec<f32> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).expect("n > 0");
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            let pivot_row = a[col].clone();
            for (x, p) in a[row][col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0f32; n];
    for row in (0..n).rev() {
        let s: f32 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x
}

/// The scalars of one UniP or UniC update of order `order` from σ_s0 to σ_t, with the earlier σs
/// `prev` (newest first): the r_k, and the coefficients (c_x, c_m0, c_res) of
/// x_t = c_x·x − c_m0·m0 − c_res·(residual), plus R and b of the order conditions.
struct Coefficients {
    rks: Vec<f32>,
    c_x: f32,
    c_m0: f32,
    c_res: f32,
    r: Vec<Vec<f32>>,
    b: Vec<f32>,
}

impl UniPcMultistepScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let schedule = NoiseSchedule::read(cfg, 0.0001, 0.02, &["linear", "scaled_linear", "squaredcos_cap_v2"], true)?.terminal_not_zero();
        let solver_order = cfg.usize("solver_order", 2)?;
        if !(1..=4).contains(&solver_order) {
            return Err(Error::Scheduler(format!("`solver_order` = {solver_order}: expected 1 to 4")));
        }
        for key in ["use_flow_sigmas", "use_dynamic_shifting"] {
            cfg.refuse_true(key)?;
        }
        for key in ["solver_p", "shift_terminal"] {
            if cfg.is_set(key) {
                return Err(Error::Scheduler(format!("`{key}` is not implemented")));
            }
        }
        let ramp = match SigmaRamp::read(cfg, true)? {
            SigmaRamp::Karras => Ramp::Karras,
            SigmaRamp::Exponential => Ramp::Exponential,
            SigmaRamp::Interpolated => Ramp::Interpolated,
        };
        let final_sigma_min = cfg.choice("final_sigmas_type", "zero", &["zero", "sigma_min"])? == "sigma_min";
        let mut sigmas = MultistepSigmas::new(schedule, cfg, ramp, final_sigma_min)?;
        sigmas.sigma_min = cfg.opt_f64("sigma_min")?;
        sigmas.sigma_max = cfg.opt_f64("sigma_max")?;
        sigmas.ramp_final_is_ramp_last = true;
        let predicts_x0 = cfg.bool("predict_x0", true)?;
        // diffusers maps the DPM-Solver names onto bh2.
        let bh1 = cfg.choice("solver_type", "bh2", &["bh1", "bh2", "midpoint", "heun", "logrho"])? == "bh1";
        Ok(UniPcMultistepScheduler {
            sigmas,
            solver_order,
            conversion: Conversion {
                prediction: Prediction::read(cfg, &["epsilon", "sample", "v_prediction"])?,
                predicts_x0,
                // The ε mode never thresholds.
                thresholding: read_thresholding(cfg)?.filter(|_| predicts_x0),
                batch: 1,
            },
            bh1,
            lower_order_final: cfg.bool("lower_order_final", true)?,
            disable_corrector: cfg.usize_list("disable_corrector")?,
            model_outputs: vec![None; solver_order],
            lower_order_nums: 0,
            last_sample: None,
            this_order: 0,
        })
    }

    fn coefficients(&self, order: usize, sigma_t: f32, sigma_s0: f32, prev: &[f32]) -> Coefficients {
        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(sigma_t);
        let (alpha_s0, sigma_s0, lambda_s0) = alpha_sigma_lambda(sigma_s0);
        let h = lambda_t - lambda_s0;
        let mut rks: Vec<f32> = prev[..order - 1].iter().map(|&s| (alpha_sigma_lambda(s).2 - lambda_s0) / h).collect();
        rks.push(1.0);
        let x0 = self.conversion.predicts_x0;
        let hh = if x0 { -h } else { h };
        let h_phi_1 = hh.exp_m1();
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let mut factorial = 1u64;
        let b_h = if self.bh1 { hh } else { hh.exp_m1() };
        let (mut r, mut b) = (Vec::new(), Vec::new());
        for i in 1..=order {
            r.push(rks.iter().map(|&rk| rk.powi(i as i32 - 1)).collect());
            b.push(h_phi_k * factorial as f32 / b_h);
            factorial *= i as u64 + 1;
            h_phi_k = h_phi_k / hh - (1.0 / factorial as f64) as f32;
        }
        let (c_x, c_m0, c_res) = if x0 {
            (sigma_t / sigma_s0, alpha_t * h_phi_1, alpha_t * b_h)
        } else {
            (alpha_t / alpha_s0, sigma_t * h_phi_1, sigma_t * b_h)
        };
        Coefficients { rks, c_x, c_m0, c_res, r, b }
    }

    /// D1_k = (m_k − m0)/r_k for the k earlier model outputs.
    fn d1s(&self, rks: &[f32], count: usize) -> Vec<Vec<f32>> {
        let outputs: Vec<&[f32]> = self.model_outputs.iter().rev().take(count + 1).map(|m| m.as_deref().expect("filled")).collect();
        (0..count).map(|k| outputs[k + 1].iter().zip(outputs[0]).map(|(mi, m0)| (mi - m0) / rks[k]).collect()).collect()
    }

    /// Σ_k ρ_k·D1_k, elementwise (torch's einsum), or None without terms.
    fn weighted(rhos: &[f32], d1s: &[Vec<f32>], n: usize) -> Option<Vec<f32>> {
        if d1s.is_empty() {
            return None;
        }
        Some((0..n).map(|e| rhos.iter().zip(d1s).map(|(r, d)| r * d[e]).sum()).collect())
    }

    /// `multistep_uni_p_bh_update` at step i.
    fn predictor(&self, i: usize, x: &[f32], order: usize) -> Vec<f32> {
        let s = &self.sigmas.sigmas;
        let prev: Vec<f32> = (1..order).map(|j| s[i - j]).collect();
        let c = self.coefficients(order, s[i + 1], s[i], &prev);
        let d1s = self.d1s(&c.rks, order - 1);
        let rhos = match order {
            1 => Vec::new(),
            2 => vec![0.5],
            _ => solve(c.r[..order - 1].iter().map(|row| row[..order - 1].to_vec()).collect(), c.b[..order - 1].to_vec()),
        };
        let m0 = self.model_outputs.last().and_then(|m| m.as_deref()).expect("filled");
        let res = Self::weighted(&rhos, &d1s, x.len());
        (0..x.len())
            .map(|e| {
                let x_t = c.c_x * x[e] - c.c_m0 * m0[e];
                x_t - c.c_res * res.as_ref().map_or(0.0, |r| r[e])
            })
            .collect()
    }

    /// `multistep_uni_c_bh_update` at step i: corrects `this_sample` (from `last_sample`) with the
    /// new converted model output.
    fn corrector(&self, i: usize, model_t: &[f32], last_sample: &[f32], order: usize) -> Vec<f32> {
        let s = &self.sigmas.sigmas;
        let prev: Vec<f32> = (1..order).map(|j| s[i - (j + 1)]).collect();
        let c = self.coefficients(order, s[i], s[i - 1], &prev);
        let d1s = self.d1s(&c.rks, order - 1);
        let rhos = if order == 1 { vec![0.5] } else { solve(c.r.clone(), c.b.clone()) };
        let m0 = self.model_outputs.last().and_then(|m| m.as_deref()).expect("filled");
        let res = Self::weighted(&rhos[..order - 1], &d1s, last_sample.len());
        let rho_t = rhos[order - 1];
        (0..last_sample.len())
            .map(|e| {
                let x_t = c.c_x * last_sample[e] - c.c_m0 * m0[e];
                let d1_t = model_t[e] - m0[e];
                x_t - c.c_res * (res.as_ref().map_or(0.0, |r| r[e]) + rho_t * d1_t)
            })
            .collect()
    }
}

impl DiffusersScheduler for UniPcMultistepScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        self.sigmas.set(n, CLASS)?;
        self.model_outputs = vec![None; self.solver_order];
        self.lower_order_nums = 0;
        self.last_sample = None;
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.sigmas.timesteps
    }

    fn step(&mut self, model_output: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
        let n = sample.len();
        check_len("model_output", model_output, n)?;
        if let Some(z) = noise {
            check_len("noise", z, n)?;
        }
        let i = self.sigmas.current(t, CLASS)?;
        let converted = convert_model_output(self.conversion, model_output, sample, self.sigmas.sigmas[i], CLASS)?;
        let use_corrector = i > 0 && !self.disable_corrector.contains(&(i - 1)) && self.last_sample.is_some();
        let sample = match (&self.last_sample, use_corrector) {
            (Some(last), true) => self.corrector(i, &converted, last, self.this_order),
            _ => sample.to_vec(),
        };
        self.model_outputs.rotate_left(1);
        *self.model_outputs.last_mut().expect("order ≥ 1") = Some(converted.clone());
        let steps = self.sigmas.timesteps.len();
        let this_order = if self.lower_order_final { self.solver_order.min(steps - i) } else { self.solver_order };
        self.this_order = this_order.min(self.lower_order_nums + 1);
        let prev_sample = self.predictor(i, &sample, self.this_order);
        self.last_sample = Some(sample);
        if self.lower_order_nums < self.solver_order {
            self.lower_order_nums += 1;
        }
        self.sigmas.step_index = Some(i + 1);
        // diffusers returns no x0; in data-prediction mode the converted output is it.
        let pred_original_sample = if self.conversion.predicts_x0 { converted } else { Vec::new() };
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
