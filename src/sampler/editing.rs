//! Editing runs on the same schedules, as diffusers defines them: SDEdit's truncated schedule
//! (the img2img pipelines' `get_timesteps` + the scheduler's `add_noise`), DDIM inversion
//! (`DDIMInverseScheduler`), RePaint's resampling schedule (`RePaintScheduler`), and slerp
//! between two starting noises. Each is reduced to the one fused update (`StepCoeffs`) plus
//! scalars the run layer applies on the host.

use super::kind::SamplerKind;
use super::schedule::{betas, PredictionType, Schedule, Step, StepCoeffs, TimestepSpacing};
use super::solvers::arange_down;
use crate::error::{Error, Result};

/// SDEdit (Meng et al. 2022) as diffusers' img2img: of an n-step schedule the last int(n·strength)
/// steps are run, from x_t = keep·x0 + noise·ε at their first timestep.
#[derive(Clone, Debug)]
pub struct Img2Img {
    /// The U-Net evaluations kept (Heun: both evaluations of each kept step).
    pub steps: Vec<Step>,
    /// Where the kept steps start: the first kept timestep and its `add_noise` scalars.
    pub timestep: i64,
    pub keep: f32,
    pub noise: f32,
}

/// One evaluation of a RePaint run and what follows it: the known region is set to
/// known_x0·image + known_noise·z (z: the step's noise), then, where the schedule jumps back,
/// x ← undo_x·x + undo_noise·z' (all the jump's `undo_step`s folded into one draw z').
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RePaintStep {
    pub step: Step,
    pub known_x0: f32,
    pub known_noise: f32,
    pub undo: Option<(f32, f32)>,
}

impl Schedule {
    /// The img2img schedule of `kind` for strength in [0, 1] (diffusers: init_timestep =
    /// min(int(n·strength), n), t_start = n − init_timestep, timesteps[t_start·order:]).
    pub fn img2img(&self, kind: SamplerKind, n: usize, eta: f32, strength: f64) -> Result<Img2Img> {
        if !(0.0..=1.0).contains(&strength) {
            return Err(Error::Input(format!("strength = {strength}: must be from 0 to 1")));
        }
        self.check_steps(n)?;
        let kept = ((n as f64 * strength) as usize).min(n);
        if kept == 0 {
            return Err(Error::Input(format!(
                "strength = {strength} with {n} steps keeps no step (int({n} × {strength}) = 0): raise the strength or the steps"
            )));
        }
        self.img2img_from(kind, n, eta, n - kept)
    }

    /// The steps of an n-step run of `kind` from step `t_start` on (0 ≤ t_start < n), started
    /// afresh there as img2img starts it (a multistep solver's first kept step is first order),
    /// and the scalars of that level: x = keep·x0 + noise·ε in the sampler's own sample space.
    /// img2img keeps n − t_start steps; a branch that changes the sampler continues this way.
    pub fn img2img_from(&self, kind: SamplerKind, n: usize, eta: f32, t_start: usize) -> Result<Img2Img> {
        self.check_steps(n)?;
        if t_start >= n {
            return Err(Error::Input(format!("step {t_start} of {n}: no step is left to run")));
        }
        let all = self.steps(kind, n, eta)?;
        let (steps, keep, noise) = match kind {
            SamplerKind::Host(class) => return Err(Error::Scheduler(format!("img2img runs the fused samplers, not {class}"))),
            SamplerKind::Ddim | SamplerKind::Ddpm => {
                let a = self.alphas_cumprod[all[t_start].timestep as usize];
                (all[t_start..].to_vec(), a.sqrt(), (1.0 - a).sqrt())
            }
            // Sigma space: x = x0 + σ·ε.
            SamplerKind::Euler => (all[t_start..].to_vec(), 1.0, self.euler_sigmas(n, self.config.final_sigma_zero)?.1[t_start]),
            SamplerKind::Heun => (all[2 * t_start..].to_vec(), 1.0, self.euler_sigmas(n, true)?.1[t_start]),
            // VP space: α_σ·x0 + σ·α_σ·ε with α_σ = 1/√(σ²+1); the first kept step is first order.
            SamplerKind::DpmPlusPlus2M => {
                let sigma = self.dpm_sigmas(n)?.1[t_start];
                let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
                (self.dpm_solver_pp_steps_from(n, t_start)?, alpha, sigma * alpha)
            }
        };
        Ok(Img2Img { timestep: steps[0].timestep, steps, keep, noise })
    }

    /// `DDIMInverseScheduler`: n steps from the clean image up to x_T, ascending timesteps. The
    /// step at t evaluates the U-Net at t on x at the level before it (t − T/n, or ᾱ = 1 / ᾱ_0 by
    /// set_alpha_to_one) and moves x to ᾱ_t along the DDIM ODE.
    pub fn ddim_inverse_steps(&self, n: usize) -> Result<Vec<Step>> {
        self.check_steps(n)?;
        let t_count = self.config.num_train_timesteps;
        let ratio = t_count / n;
        let ts: Vec<i64> = match self.config.timestep_spacing {
            TimestepSpacing::Leading => (0..n).map(|i| (i * ratio + self.config.steps_offset) as i64).collect(),
            TimestepSpacing::Trailing => {
                arange_down(t_count as f64, t_count as f64 / n as f64).iter().rev().map(|v| v.round_ties_even() as i64 - 1).collect()
            }
            TimestepSpacing::Linspace => {
                return Err(Error::Scheduler(
                    "`timestep_spacing` = \"linspace\": DDIM inversion (DDIMInverseScheduler) supports \"leading\" and \"trailing\"".into(),
                ))
            }
        };
        if let Some(bad) = ts.iter().find(|&&t| t < 0 || t as usize >= t_count) {
            return Err(Error::Scheduler(format!("inversion timestep {bad} outside 0..{t_count} (steps_offset too large?)")));
        }
        let initial = if self.config.set_alpha_to_one { 1.0 } else { self.alphas_cumprod[0] as f64 };
        Ok(ts
            .iter()
            .map(|&t| {
                let from = (t - ratio as i64).min(t_count as i64 - 1);
                let a_next = self.alphas_cumprod[t as usize] as f64;
                let coeffs = StepCoeffs {
                    c_x0: a_next.sqrt() as f32,
                    c_eps: (1.0 - a_next).sqrt() as f32,
                    ..self.prediction(self.alpha_at(from, initial))
                };
                Step::at(t, coeffs)
            })
            .collect())
    }

    /// `RePaintScheduler.set_timesteps(n, jump_length, jump_n_sample)` and its `step`/`undo_step`
    /// (Lugmayr et al. 2022, Algorithm 1 with DDIM's update, η = `eta`): one entry per evaluation.
    pub fn repaint(&self, n: usize, jump_length: usize, jump_n_sample: usize, eta: f32) -> Result<Vec<RePaintStep>> {
        self.check_steps(n)?;
        if jump_length == 0 || jump_n_sample == 0 {
            return Err(Error::Input(format!("jump_length = {jump_length}, jump_n_sample = {jump_n_sample}: both must be at least 1")));
        }
        if !eta.is_finite() || !(0.0..=1.0).contains(&eta) {
            return Err(Error::Input(format!("eta = {eta}: RePaint takes η from 0 to 1")));
        }
        if self.config.prediction_type != PredictionType::Epsilon {
            return Err(Error::Scheduler(format!(
                "`prediction_type` = {:?}: RePaint (RePaintScheduler) is defined for \"epsilon\" models only",
                self.config.prediction_type.as_str()
            )));
        }
        let ratio = self.config.num_train_timesteps / n;
        let mut out: Vec<RePaintStep> = Vec::new();
        let betas = betas(&self.config);
        let indices = repaint_indices(n, jump_length, jump_n_sample);
        let mut t_last = indices[0] + 1;
        for i in indices {
            if i < t_last {
                out.push(self.repaint_step(i * ratio, ratio, eta));
            } else {
                // undo_step(x, t_last·ratio): `ratio` forward steps x ← √(1−β)·x + √β·z, folded:
                // x ← A·x + √(1 − A²)·z' with A = Π √(1−β).
                let last = out.last_mut().expect("RePaint's schedule starts with an evaluation");
                let (a, _) = last.undo.unwrap_or((1.0, 0.0));
                let a = (t_last * ratio..t_last * ratio + ratio).fold(a as f64, |a, j| a * (1.0 - betas[j] as f64).sqrt());
                last.undo = Some((a as f32, (1.0 - a * a).max(0.0).sqrt() as f32));
            }
            t_last = i;
        }
        Ok(out)
    }

    fn repaint_step(&self, t: usize, ratio: usize, eta: f32) -> RePaintStep {
        let a = self.alphas_cumprod[t] as f64;
        let a_prev = t.checked_sub(ratio).map_or(1.0, |p| self.alphas_cumprod[p] as f64);
        let variance = ((1.0 - a_prev) / (1.0 - a)) * (1.0 - a / a_prev);
        let std = eta as f64 * variance.sqrt();
        let coeffs = StepCoeffs {
            // RePaintScheduler clamps x̂₀ to [−1, 1] when clip_sample is set, whatever the range.
            clip: if self.config.clip_sample { 1.0 } else { 0.0 },
            c_x0: a_prev.sqrt() as f32,
            c_eps: (1.0 - a_prev - std * std).max(0.0).sqrt() as f32,
            c_noise: if t > 0 && eta > 0.0 { std as f32 } else { 0.0 },
            ..self.prediction(a)
        };
        let a_prev = a_prev as f32;
        RePaintStep { step: Step::at(t as i64, coeffs), known_x0: a_prev.sqrt(), known_noise: (1.0 - a_prev).sqrt(), undo: None }
    }
}

/// RePaint's schedule in inference-step units: down one step at a time, and at every
/// `jump_length`-th step jump back up `jump_length` steps, `jump_n_sample − 1` times.
fn repaint_indices(n: usize, jump_length: usize, jump_n_sample: usize) -> Vec<usize> {
    let mut jumps: std::collections::HashMap<usize, usize> =
        (0..n.saturating_sub(jump_length)).step_by(jump_length).map(|j| (j, jump_n_sample - 1)).collect();
    let (mut out, mut t) = (Vec::new(), n);
    while t >= 1 {
        t -= 1;
        out.push(t);
        if let Some(left) = jumps.get_mut(&t).filter(|l| **l > 0) {
            *left -= 1;
            for _ in 0..jump_length {
                t += 1;
                out.push(t);
            }
        }
    }
    out
}

/// Spherical interpolation between two Gaussian noises (Shoemake 1985; the usual way to walk
/// between diffusion latents: a straight line would pass through low-norm, atypical noise).
/// Falls back to the straight line when a and b are (anti)parallel.
pub fn slerp(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let cos = (dot / (norm(a) * norm(b))).clamp(-1.0, 1.0);
    let theta = cos.acos();
    let (wa, wb) =
        if theta.sin().abs() < 1e-6 { (1.0 - t, t) } else { (((1.0 - t) * theta).sin() / theta.sin(), (t * theta).sin() / theta.sin()) };
    a.iter().zip(b).map(|(x, y)| (wa * *x as f64 + wb * *y as f64) as f32).collect()
}

/// `frames` points from a to b by slerp, both ends included, one after the other.
pub fn slerp_frames(a: &[f32], b: &[f32], frames: usize) -> Vec<f32> {
    (0..frames).flat_map(|k| slerp(a, b, k as f64 / (frames.max(2) - 1) as f64)).collect()
}
