//! `DEISMultistepScheduler`: diffusion exponential integrator sampling (Zhang & Chen 2023), the
//! "logrho" variant: the ε of past steps extrapolated by Lagrange polynomials in log ρ (ρ = σ/α),
//! integrated exactly; orders 1–3.

use super::config::{check_len, Cfg, NoiseSchedule, Prediction};
use super::dpm_updates::alpha_sigma_lambda;
use super::multistep::{convert_model_output, read_thresholding, Conversion, MultistepSigmas, Ramp};
use super::sigmas::SigmaRamp;
use super::{DiffusersScheduler, StepOutput};
use crate::error::{Error, Result};

const CLASS: &str = "DEISMultistepScheduler";

#[derive(Clone, Debug)]
pub struct DeisMultistepScheduler {
    pub sigmas: MultistepSigmas,
    solver_order: usize,
    conversion: Conversion,
    lower_order_final: bool,
    // The run's state: the last `solver_order` ε (newest last).
    model_outputs: Vec<Option<Vec<f32>>>,
    lower_order_nums: usize,
}

/// The (α, σ) of a VE σ and ρ = σ_t/α_t, f32 as diffusers.
fn alpha_sigma_rho(sigma: f32) -> (f32, f32, f32) {
    let (alpha, sigma_t, _) = alpha_sigma_lambda(sigma);
    (alpha, sigma_t, sigma_t / alpha)
}

/// ∫ of the order-2 Lagrange basis in log ρ (diffusers' `ind_fn` of the second-order update).
fn ind2(t: f32, b: f32, c: f32) -> f32 {
    t * (-c.ln() + t.ln() - 1.0) / (b.ln() - c.ln())
}

/// The third-order `ind_fn`.
fn ind3(t: f32, b: f32, c: f32, d: f32) -> f32 {
    let (lt, lc, ld) = (t.ln(), c.ln(), d.ln());
    let numerator = t * (lc * (ld - lt + 1.0) - ld * lt + ld + lt * lt - 2.0 * lt + 2.0);
    let denominator = (b.ln() - lc) * (b.ln() - ld);
    numerator / denominator
}

impl DeisMultistepScheduler {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let schedule = NoiseSchedule::read(cfg, 0.0001, 0.02, &["linear", "scaled_linear", "squaredcos_cap_v2"], false)?;
        let solver_order = cfg.usize("solver_order", 2)?;
        if !(1..=3).contains(&solver_order) {
            return Err(Error::Scheduler(format!("`solver_order` = {solver_order}: expected 1, 2 or 3")));
        }
        // diffusers maps the DPM-Solver and UniPC names onto its own.
        cfg.choice("algorithm_type", "deis", &["deis", "dpmsolver", "dpmsolver++"])?;
        cfg.choice("solver_type", "logrho", &["logrho", "midpoint", "heun", "bh1", "bh2"])?;
        for key in ["use_flow_sigmas", "use_dynamic_shifting"] {
            cfg.refuse_true(key)?;
        }
        let ramp = match SigmaRamp::read(cfg, true)? {
            SigmaRamp::Karras => Ramp::Karras,
            SigmaRamp::Exponential => Ramp::Exponential,
            SigmaRamp::Interpolated => Ramp::Interpolated,
        };
        // The final σ is σ_0 (or the ramp's last): DEIS has no final_sigmas_type.
        let mut sigmas = MultistepSigmas::new(schedule, cfg, ramp, true)?;
        sigmas.ramp_final_is_ramp_last = true;
        Ok(DeisMultistepScheduler {
            sigmas,
            solver_order,
            conversion: Conversion {
                prediction: Prediction::read(cfg, &["epsilon", "sample", "v_prediction"])?,
                predicts_x0: true,
                thresholding: read_thresholding(cfg)?,
                batch: 1,
            },
            lower_order_final: cfg.bool("lower_order_final", true)?,
            model_outputs: vec![None; solver_order],
            lower_order_nums: 0,
        })
    }

    /// The order-`order` update at step i: x_t = α_t·(x/α_s0 + Σ c_k·ε_k) (order 1 in its
    /// exponential-integrator form).
    fn update(&self, i: usize, order: usize, x: &[f32]) -> Vec<f32> {
        let s = &self.sigmas.sigmas;
        let m: Vec<&[f32]> = self.model_outputs.iter().rev().take(order).map(|m| m.as_deref().expect("filled")).collect();
        let (alpha_t, sigma_t, rho_t) = alpha_sigma_rho(s[i + 1]);
        let (alpha_s0, _, rho_s0) = alpha_sigma_rho(s[i]);
        if order == 1 {
            let h = alpha_sigma_lambda(s[i + 1]).2 - alpha_sigma_lambda(s[i]).2;
            let (c_x, c_m) = (alpha_t / alpha_s0, sigma_t * (h.exp() - 1.0));
            return x.iter().zip(m[0]).map(|(x, m)| c_x * x - c_m * m).collect();
        }
        let rho_s1 = alpha_sigma_rho(s[i - 1]).2;
        let coefs: Vec<f32> = if order == 2 {
            vec![ind2(rho_t, rho_s0, rho_s1) - ind2(rho_s0, rho_s0, rho_s1), ind2(rho_t, rho_s1, rho_s0) - ind2(rho_s0, rho_s1, rho_s0)]
        } else {
            let rho_s2 = alpha_sigma_rho(s[i - 2]).2;
            vec![
                ind3(rho_t, rho_s0, rho_s1, rho_s2) - ind3(rho_s0, rho_s0, rho_s1, rho_s2),
                ind3(rho_t, rho_s1, rho_s2, rho_s0) - ind3(rho_s0, rho_s1, rho_s2, rho_s0),
                ind3(rho_t, rho_s2, rho_s0, rho_s1) - ind3(rho_s0, rho_s2, rho_s0, rho_s1),
            ]
        };
        (0..x.len())
            .map(|e| {
                let mut acc = x[e] / alpha_s0;
                for (c, mk) in coefs.iter().zip(&m) {
                    acc += c * mk[e];
                }
                alpha_t * acc
            })
            .collect()
    }
}

impl DiffusersScheduler for DeisMultistepScheduler {
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

    fn step(&mut self, model_output: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
        let n = sample.len();
        check_len("model_output", model_output, n)?;
        if let Some(z) = noise {
            check_len("noise", z, n)?;
        }
        let i = self.sigmas.current(t, CLASS)?;
        let steps = self.sigmas.timesteps.len();
        let short = self.lower_order_final && steps < 15;
        let (lower_order_final, lower_order_second) = (i + 1 == steps && short, i + 2 == steps && short);
        // x0 (thresholded when on), then ε back from it: DEIS steps in ε.
        let x0 = convert_model_output(self.conversion, model_output, sample, self.sigmas.sigmas[i], CLASS)?;
        let (alpha_t, sigma_t, _) = alpha_sigma_lambda(self.sigmas.sigmas[i]);
        let eps: Vec<f32> = sample.iter().zip(&x0).map(|(x, p)| (x - alpha_t * p) / sigma_t).collect();
        self.model_outputs.rotate_left(1);
        *self.model_outputs.last_mut().expect("order ≥ 1") = Some(eps);
        let order = if self.solver_order == 1 || self.lower_order_nums < 1 || lower_order_final {
            1
        } else if self.solver_order == 2 || self.lower_order_nums < 2 || lower_order_second {
            2
        } else {
            3
        };
        let prev_sample = self.update(i, order, sample);
        if self.lower_order_nums < self.solver_order {
            self.lower_order_nums += 1;
        }
        self.sigmas.step_index = Some(i + 1);
        Ok(StepOutput { prev_sample, pred_original_sample: x0 })
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
