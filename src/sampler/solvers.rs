//! The sigma-space samplers of diffusers, as per-evaluation coefficients for the one fused update
//! (`StepCoeffs`): `EulerDiscreteScheduler`, `HeunDiscreteScheduler` (Karras et al. 2022,
//! Algorithm 1 without churn) and `DPMSolverMultistepScheduler` with algorithm_type dpmsolver++
//! (Lu et al. 2022, DPM-Solver++(2M), midpoint form). Timesteps and sigmas follow diffusers'
//! `set_timesteps` bit for bit (numpy in f64 over torch's f32 alphas_cumprod, stored as f32); the
//! update coefficients are computed in f64 from those f32 sigmas.

use super::kind::SamplerKind;
use super::schedule::{PredictionType, Schedule, SchedulerConfig, Step, StepCoeffs, TimestepSpacing};
use crate::error::{Error, Result};

impl SchedulerConfig {
    /// This config as the scheduler class of `kind` reads it (diffusers' `from_config`): keys the
    /// file set are kept, the others take that class's defaults (Euler, Heun and DPM-Solver++
    /// space timesteps by "linspace"; Heun's betas default to 0.00085..0.012 and its clipping to off).
    pub fn for_sampler(&self, kind: SamplerKind) -> SchedulerConfig {
        let mut c = self.clone();
        let unset = |k: &str| !self.keys.iter().any(|s| s == k);
        if matches!(kind, SamplerKind::Euler | SamplerKind::Heun | SamplerKind::DpmPlusPlus2M) && unset("timestep_spacing") {
            c.timestep_spacing = TimestepSpacing::Linspace;
        }
        if kind == SamplerKind::Heun {
            if unset("beta_start") {
                c.beta_start = 0.00085;
            }
            if unset("beta_end") {
                c.beta_end = 0.012;
            }
            if unset("clip_sample") {
                c.clip_sample = false;
            }
        }
        c
    }
}

/// numpy's `np.interp(x, arange(len(fp)), fp)`.
pub(crate) fn interp(x: f64, fp: &[f32]) -> f64 {
    let last = fp.len() - 1;
    if x <= 0.0 {
        return fp[0] as f64;
    }
    if x >= last as f64 {
        return fp[last] as f64;
    }
    let j = x.floor() as usize;
    if x == j as f64 {
        return fp[j] as f64;
    }
    (fp[j + 1] as f64 - fp[j] as f64) * (x - j as f64) + fp[j] as f64
}

/// numpy's `np.linspace(a, b, n)` in f64 (i·step, the last value exactly b).
pub(crate) fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a];
    }
    let step = (b - a) / (n - 1) as f64;
    (0..n).map(|i| if i == n - 1 { b } else { i as f64 * step + a }).collect()
}

/// numpy's `np.arange(start, 0, -step)` for a positive float step.
pub(super) fn arange_down(start: f64, step: f64) -> Vec<f64> {
    let len = (start / step).ceil() as usize;
    (0..len).map(|i| start + i as f64 * -step).collect()
}

impl Schedule {
    /// σ_t = √((1 − ᾱ_t)/ᾱ_t) over the train timesteps, in f32 as torch computes it.
    fn train_sigmas(&self) -> Vec<f32> {
        self.alphas_cumprod.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect()
    }

    /// `_convert_to_karras`: ρ = 7 between σ_min and σ_max (the config's, else the ends of `sigmas`).
    fn karras(&self, sigmas: &[f64], n: usize) -> Vec<f64> {
        let min = self.config.sigma_min.unwrap_or(sigmas[sigmas.len() - 1]);
        let max = self.config.sigma_max.unwrap_or(sigmas[0]);
        let rho = 7.0;
        let (min_inv, max_inv) = (min.powf(1.0 / rho), max.powf(1.0 / rho));
        linspace(0.0, 1.0, n).iter().map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho)).collect()
    }

    /// `_sigma_to_t`: the (fractional) train timestep of σ, interpolating log σ.
    pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
        let log_sigma = sigma.max(1e-10).ln();
        // cumsum(dists >= 0).argmax(): the last index with dists >= 0 (0 when there is none).
        let last_ge = log_sigmas.iter().rposition(|&l| log_sigma - l as f64 >= 0.0);
        let low = last_ge.unwrap_or(0).min(log_sigmas.len() - 2);
        let (lo, hi) = (log_sigmas[low] as f64, log_sigmas[low + 1] as f64);
        let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
        (1.0 - w) * low as f64 + w * (low + 1) as f64
    }

    /// Euler's and Heun's `set_timesteps`: (model timesteps, sigmas with the final one appended).
    pub fn euler_sigmas(&self, n: usize, final_zero: bool) -> Result<(Vec<f32>, Vec<f32>)> {
        self.check_steps(n)?;
        let t = self.config.num_train_timesteps;
        let ts: Vec<f64> = match self.config.timestep_spacing {
            TimestepSpacing::Linspace => linspace(0.0, (t - 1) as f64, n).into_iter().rev().map(|v| v as f32 as f64).collect(),
            TimestepSpacing::Leading => {
                let ratio = t / n;
                (0..n).rev().map(|i| (i * ratio) as f64 + self.config.steps_offset as f64).collect()
            }
            TimestepSpacing::Trailing => {
                arange_down(t as f64, t as f64 / n as f64).into_iter().map(|v| v.round_ties_even() - 1.0).collect()
            }
        };
        let train = self.train_sigmas();
        let mut sigmas: Vec<f64> = ts.iter().map(|&x| interp(x, &train)).collect();
        let mut ts = ts;
        if self.config.use_karras_sigmas {
            let log_sigmas: Vec<f32> = train.iter().map(|s| s.ln()).collect();
            sigmas = self.karras(&sigmas, n);
            ts = sigmas.iter().map(|&s| Self::sigma_to_t(s, &log_sigmas)).collect();
        }
        let last = if final_zero { 0.0 } else { train[0] as f64 };
        sigmas.push(last);
        Ok((ts.iter().map(|&v| v as f32).collect(), sigmas.iter().map(|&v| v as f32).collect()))
    }

    /// `init_noise_sigma` of Euler and Heun: x_T = noise · this.
    fn ve_init_sigma(&self, sigmas: &[f32]) -> f32 {
        let max = sigmas.iter().cloned().fold(0.0f32, f32::max);
        match self.config.timestep_spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
        }
    }

    /// (x0_x, x0_m): x0 from x and the model output m at noise level σ in sigma (VE) space.
    fn ve_x0(&self, sigma: f64, sample_allowed: bool) -> Result<(f64, f64)> {
        Ok(match self.config.prediction_type {
            PredictionType::Epsilon => (1.0, -sigma),
            PredictionType::VPrediction => (1.0 / (sigma * sigma + 1.0), -sigma / (sigma * sigma + 1.0).sqrt()),
            PredictionType::Sample if sample_allowed => (0.0, 1.0),
            PredictionType::Sample => {
                return Err(Error::Scheduler("`prediction_type` = \"sample\" is not implemented by EulerDiscreteScheduler".into()))
            }
        })
    }

    fn ve_clip(&self) -> f32 {
        if self.config.clip_sample {
            self.config.clip_sample_range as f32
        } else {
            0.0
        }
    }

    /// An evaluation in sigma space at σ and model timestep t.
    fn ve_step(&self, t: f32, sigma: f64, coeffs: StepCoeffs) -> Step {
        Step { timestep: t.round() as i64, t_model: t, c_in: (1.0 / (sigma * sigma + 1.0).sqrt()) as f32, coeffs }
    }

    /// `EulerDiscreteScheduler` (s_churn = 0): x ← x + (σ_next − σ)·(x − x0)/σ.
    pub fn euler_steps(&self, n: usize) -> Result<Vec<Step>> {
        let (ts, sigmas) = self.euler_sigmas(n, self.config.final_sigma_zero)?;
        (0..n)
            .map(|i| {
                let (s, next) = (sigmas[i] as f64, sigmas[i + 1] as f64);
                let (x0_x, x0_m) = self.ve_x0(s, false)?;
                let dt = next - s;
                let coeffs = StepCoeffs {
                    x0_x: x0_x as f32,
                    x0_m: x0_m as f32,
                    c_x: (1.0 + dt / s) as f32,
                    c_x0: (-dt / s) as f32,
                    ..Default::default()
                };
                Ok(self.ve_step(ts[i], s, coeffs))
            })
            .collect()
    }

    /// `HeunDiscreteScheduler`: per step a predictor evaluation at σ_i (x_mid = x + dt·d1; h keeps
    /// x + dt/2·d1) and a corrector at σ_{i+1} (x ← h + dt/2·d2); the last step, to σ = 0, is the
    /// predictor alone: 2n − 1 evaluations.
    pub fn heun_steps(&self, n: usize) -> Result<Vec<Step>> {
        let (ts, sigmas) = self.euler_sigmas(n, true)?;
        let clip = self.ve_clip();
        let mut out = Vec::with_capacity(2 * n - 1);
        for i in 0..n {
            let (s, next) = (sigmas[i] as f64, sigmas[i + 1] as f64);
            let dt = next - s;
            let (x0_x, x0_m) = self.ve_x0(s, true)?;
            let predictor = StepCoeffs {
                x0_x: x0_x as f32,
                x0_m: x0_m as f32,
                clip,
                c_x: (1.0 + dt / s) as f32,
                c_x0: (-dt / s) as f32,
                h_x: (1.0 + dt / (2.0 * s)) as f32,
                h_x0: (-dt / (2.0 * s)) as f32,
                ..Default::default()
            };
            out.push(self.ve_step(ts[i], s, predictor));
            if i + 1 < n {
                let (x0_x, x0_m) = self.ve_x0(next, true)?;
                let corrector = StepCoeffs {
                    x0_x: x0_x as f32,
                    x0_m: x0_m as f32,
                    clip,
                    c_h: 1.0,
                    c_x: (dt / (2.0 * next)) as f32,
                    c_x0: (-dt / (2.0 * next)) as f32,
                    ..Default::default()
                };
                out.push(self.ve_step(ts[i + 1], next, corrector));
            }
        }
        Ok(out)
    }

    /// `DPMSolverMultistepScheduler.set_timesteps`: (integer timesteps, sigmas with the final one).
    pub fn dpm_sigmas(&self, n: usize) -> Result<(Vec<i64>, Vec<f32>)> {
        self.check_steps(n)?;
        let t = self.config.num_train_timesteps;
        let mut ts: Vec<f64> = match self.config.timestep_spacing {
            TimestepSpacing::Linspace => linspace(0.0, (t - 1) as f64, n + 1).into_iter().rev().take(n).map(f64::round_ties_even).collect(),
            TimestepSpacing::Leading => {
                let ratio = t / (n + 1);
                (1..=n).rev().map(|i| (i * ratio + self.config.steps_offset) as f64).collect()
            }
            TimestepSpacing::Trailing => {
                arange_down(t as f64, t as f64 / n as f64).into_iter().map(|v| v.round_ties_even() - 1.0).collect()
            }
        };
        let train = self.train_sigmas();
        let mut sigmas: Vec<f64>;
        if self.config.use_karras_sigmas {
            let log_sigmas: Vec<f32> = train.iter().map(|s| s.ln()).collect();
            let descending: Vec<f64> = train.iter().rev().map(|&s| s as f64).collect();
            sigmas = self.karras(&descending, n);
            ts = sigmas.iter().map(|&s| Self::sigma_to_t(s, &log_sigmas)).collect();
            if self.config.beta_schedule != super::schedule::BetaSchedule::SquaredcosCapV2 {
                ts = ts.into_iter().map(f64::round_ties_even).collect();
            }
        } else {
            sigmas = ts.iter().map(|&x| interp(x, &train)).collect();
        }
        sigmas.push(if self.config.final_sigma_zero { 0.0 } else { train[0] as f64 });
        Ok((ts.iter().map(|&v| v as i64).collect(), sigmas.iter().map(|&v| v as f32).collect()))
    }

    /// DPM-Solver++ (2M, midpoint; order 1 with `solver_order` 1, at the first step, and at the
    /// last when `lower_order_final` applies or the final sigma is 0). x stays in VP space, h
    /// keeps the previous x0.
    pub fn dpm_solver_pp_steps(&self, n: usize) -> Result<Vec<Step>> {
        self.dpm_solver_pp_steps_from(n, 0)
    }

    /// The steps of an n-step DPM-Solver++ run from step `begin` on (img2img's `set_begin_index`):
    /// the first of them is first order, as the solver has no history yet.
    pub fn dpm_solver_pp_steps_from(&self, n: usize, begin: usize) -> Result<Vec<Step>> {
        let (ts, sigmas) = self.dpm_sigmas(n)?;
        // (α_t, σ_t, λ_t) of a VE sigma; λ = +∞ at σ = 0.
        let vp = |s: f32| {
            let s = s as f64;
            let alpha = 1.0 / (s * s + 1.0).sqrt();
            (alpha, s * alpha, alpha.ln() - (s * alpha).ln())
        };
        (begin..n)
            .map(|i| {
                let (alpha_s, sigma_s, lambda_s) = vp(sigmas[i]);
                let (alpha_t, sigma_t, lambda_t) = vp(sigmas[i + 1]);
                let (x0_x, x0_m) = match self.config.prediction_type {
                    PredictionType::Epsilon => (1.0 / alpha_s, -sigma_s / alpha_s),
                    PredictionType::VPrediction => (alpha_s, -sigma_s),
                    PredictionType::Sample => (0.0, 1.0),
                };
                let last = i + 1 == n;
                let lower_final = last && ((self.config.lower_order_final && n < 15) || self.config.final_sigma_zero);
                let first_order = self.config.solver_order == 1 || i == begin || lower_final;
                let h = lambda_t - lambda_s;
                // −α_t·(e^{−h} − 1); at σ_t = 0 (h = ∞) it is α_t = 1 and σ_t/σ_s = 0.
                let a = -alpha_t * ((-h).exp() - 1.0);
                let ratio = sigma_t / sigma_s;
                let mut coeffs = StepCoeffs { x0_x: x0_x as f32, x0_m: x0_m as f32, c_x: ratio as f32, h_x0: 1.0, ..Default::default() };
                if first_order {
                    coeffs.c_x0 = a as f32;
                } else {
                    let (_, _, lambda_s1) = vp(sigmas[i - 1]);
                    let r0 = (lambda_s - lambda_s1) / h;
                    coeffs.c_x0 = (a * (1.0 + 0.5 / r0)) as f32;
                    coeffs.c_h = (-a * 0.5 / r0) as f32;
                }
                Ok(Step::at(ts[i], coeffs))
            })
            .collect()
    }

    /// `init_noise_sigma` of `kind`'s scheduler for an n-step run.
    pub fn init_noise_sigma(&self, kind: SamplerKind, n: usize) -> Result<f32> {
        Ok(match kind {
            SamplerKind::Euler => self.ve_init_sigma(&self.euler_sigmas(n, self.config.final_sigma_zero)?.1),
            SamplerKind::Heun => self.ve_init_sigma(&self.euler_sigmas(n, true)?.1),
            _ => 1.0,
        })
    }
}
