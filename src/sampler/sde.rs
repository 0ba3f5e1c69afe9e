//! Score-based SDE samplers (Song et al., ICLR 2021) on a discrete VP (ε-prediction) model, the
//! way the paper's code (`score_sde`, `sampling.py`) runs its DDPM checkpoints: continuous time
//! t ∈ [ε, 1], the model fed t·(T − 1), its score s(x, t) = −ε̂/σ with σ = √(1 − ᾱ[⌊t·(T − 1)⌋]),
//! and the VP SDE dx = −½β(t)x dt + √β(t) dw with β(t) = T·β[t·(T − 1)] (the discrete betas
//! linearly interpolated: for a linear schedule exactly the paper's β_min + t(β_max − β_min)).
//!
//! - `ReverseSdeEulerMaruyama`: the reverse SDE by Euler–Maruyama, dt = −1/N (diffusers'
//!   `ScoreSdeVpScheduler.step_pred`): x̄ = x + (½βx + βs)/N, x = x̄ + √(β/N)·z.
//! - `ProbabilityFlowOdeEuler`: the probability-flow ODE by Euler: x = x + ½β(x + s)/N.
//! - `PredictorCorrectorVp`: at each t, `corrector_steps` Langevin corrections with target
//!   signal-to-noise ratio `snr` (step 2α(snr·‖z‖/‖s‖)², α = 1 − β_i), then the reverse-diffusion
//!   predictor of the discretised SDE: x̄ = (2 − √(1 − β_i))x + β_i·s, x = x̄ + √β_i·z.
//!
//! All three end on the last step's mean (no noise added), as `score_sde`'s `denoise`. They step on
//! the host through the same surface as diffusers' classes (`DiffusersScheduler`), so the run loop
//! runs them on every engine.

use super::diffusers::{Cfg, DiffusersScheduler, NoiseSchedule, StepOutput};
use crate::error::{Error, Result};

/// (class name, sampler name) of the samplers here.
pub const CLASSES: &[&str] = &["ReverseSdeEulerMaruyama", "ProbabilityFlowOdeEuler", "PredictorCorrectorVp", RK45];

/// The adaptive probability-flow ODE solver (`sampler::rk45`): its run loop is its own.
pub const RK45: &str = "ProbabilityFlowOdeRk45";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Method {
    EulerMaruyama,
    ProbabilityFlow,
    PredictorCorrector { snr: f64, corrector_steps: usize },
}

#[derive(Clone, Debug)]
pub struct VpSdeSampler {
    class: &'static str,
    method: Method,
    schedule: NoiseSchedule,
    sampling_eps: f64,
    /// Continuous times of the N levels, 1 … ε.
    levels: Vec<f64>,
    /// The model timestep of every evaluation (t·(T − 1)), as `timesteps()`.
    model_t: Vec<f64>,
    /// Evaluations done since `set_timesteps`.
    done: usize,
    batch: usize,
}

impl VpSdeSampler {
    /// One of `CLASSES` from a scheduler config (its betas and `num_train_timesteps`; `sampling_eps`
    /// (1e-3), and for the PC sampler `snr` (0.16) and `correct_steps` (1)).
    pub fn from_config(json: &str) -> Result<Self> {
        let cfg = Cfg::parse(json)?;
        let class = match cfg.class_name() {
            Some(c) => {
                CLASSES.iter().find(|k| **k == c).copied().ok_or_else(|| Error::Config(format!("{c} is not a score-SDE sampler")))?
            }
            None => return Err(Error::Config("score-SDE sampler config: no `_class_name`".into())),
        };
        let method = match class {
            "ReverseSdeEulerMaruyama" => Method::EulerMaruyama,
            "ProbabilityFlowOdeEuler" | RK45 => Method::ProbabilityFlow,
            _ => Method::PredictorCorrector { snr: cfg.f64("snr", 0.16)?, corrector_steps: cfg.usize("correct_steps", 1)? },
        };
        if let Method::PredictorCorrector { snr, .. } = method {
            if !(snr > 0.0 && snr.is_finite()) {
                return Err(Error::Scheduler(format!("`snr` = {snr}: the target signal-to-noise ratio must be positive")));
            }
        }
        let sampling_eps = cfg.f64("sampling_eps", 1e-3)?;
        if !(sampling_eps > 0.0 && sampling_eps < 1.0) {
            return Err(Error::Scheduler(format!("`sampling_eps` = {sampling_eps}: must be in (0, 1)")));
        }
        let schedule = NoiseSchedule::read(&cfg, 0.0001, 0.02, &["linear", "scaled_linear", "squaredcos_cap_v2"], false)?;
        Ok(VpSdeSampler { class, method, schedule, sampling_eps, levels: Vec::new(), model_t: Vec::new(), done: 0, batch: 1 })
    }

    fn t_count(&self) -> usize {
        self.schedule.betas.len()
    }

    /// Evaluations per level.
    fn per_level(&self) -> usize {
        match self.method {
            Method::PredictorCorrector { corrector_steps, .. } => corrector_steps + 1,
            _ => 1,
        }
    }

    /// β(t) = T·β[t·(T − 1)], the discrete betas linearly interpolated.
    fn beta(&self, t: f64) -> f64 {
        let x = t * (self.t_count() - 1) as f64;
        self.t_count() as f64 * super::solvers::interp(x, &self.schedule.betas)
    }

    /// The discrete index ⌊t·(T − 1)⌋ score_sde reads σ and β_i at.
    fn index(&self, t: f64) -> usize {
        ((t * (self.t_count() - 1) as f64) as usize).min(self.t_count() - 1)
    }

    fn sigma(&self, t: f64) -> f64 {
        (1.0 - self.schedule.alphas_cumprod[self.index(t)] as f64).sqrt()
    }

    /// The model timestep of continuous time t: t·(T − 1).
    pub fn model_timestep(&self, t: f64) -> f64 {
        t * (self.t_count() - 1) as f64
    }

    /// The probability-flow ODE's dx/dt = −½β(t)(x + s) at continuous time t from the model's ε̂
    /// (s = −ε̂/σ), rounded to f32 as the paper's code returns it to the solver.
    pub fn ode_drift(&self, t: f64, x: &[f32], eps: &[f32]) -> Vec<f64> {
        let (beta, sigma) = (self.beta(t), self.sigma(t));
        x.iter().zip(eps).map(|(&x, &e)| (-0.5 * beta * (x as f64 - e as f64 / sigma)) as f32 as f64).collect()
    }

    /// Mean L2 norm of the batch items (torch.norm(x.reshape(B, −1), dim=−1).mean()).
    fn mean_norm(&self, x: &[f32]) -> f64 {
        let per = x.len() / self.batch;
        x.chunks(per).map(|c| c.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt()).sum::<f64>() / self.batch as f64
    }
}

impl DiffusersScheduler for VpSdeSampler {
    fn class_name(&self) -> &'static str {
        self.class
    }

    /// N levels from t = 1 to `sampling_eps` (torch.linspace, as score_sde and ScoreSdeVpScheduler).
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        if n < 1 {
            return Err(Error::Scheduler(format!("{}: {n} steps: need at least 1", self.class)));
        }
        self.levels = super::solvers::linspace(1.0, self.sampling_eps, n);
        let scale = (self.t_count() - 1) as f64;
        let per = self.per_level();
        self.model_t = self.levels.iter().flat_map(|&t| std::iter::repeat_n(t * scale, per)).collect();
        self.done = 0;
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.model_t
    }

    /// One evaluation's update from the model's ε̂ at the evaluation `t` (a model timestep of
    /// `timesteps()`, in order). `pred_original_sample` is Tweedie's x̂₀ = (x + σ²s)/√ᾱ.
    fn step(&mut self, model_output: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
        let n = sample.len();
        if model_output.len() != n {
            return Err(Error::Input(format!("{}: model_output has {} values, sample {n}", self.class, model_output.len())));
        }
        let expected = *self.model_t.get(self.done).ok_or_else(|| {
            Error::Scheduler(format!("{}: all {} evaluations are done (call set_timesteps for a new run)", self.class, self.model_t.len()))
        })?;
        if (expected - t).abs() > 1e-9 * expected.abs().max(1.0) {
            return Err(Error::Scheduler(format!("{}: evaluation {} is at timestep {expected}, not {t}", self.class, self.done)));
        }
        let (level, sub) = (self.done / self.per_level(), self.done % self.per_level());
        let last = level + 1 == self.levels.len() && sub + 1 == self.per_level();
        self.done += 1;
        let tc = self.levels[level];
        let sigma = self.sigma(tc);
        let score: Vec<f64> = model_output.iter().map(|&m| -(m as f64) / sigma).collect();
        let alpha_bar = self.schedule.alphas_cumprod[self.index(tc)] as f64;
        let x0 = sample.iter().zip(&score).map(|(&x, s)| ((x as f64 + sigma * sigma * s) / alpha_bar.sqrt()) as f32).collect();
        let draws = !last && self.method != Method::ProbabilityFlow;
        let z = match (noise, draws) {
            (Some(z), _) if z.len() != n => return Err(Error::Input(format!("{}: noise has {} values, sample {n}", self.class, z.len()))),
            (Some(z), true) => z,
            (None, true) => return Err(Error::Input(format!("{}: the evaluation at t = {tc} adds noise: pass it", self.class))),
            (_, false) => &[][..],
        };
        let big_n = self.levels.len() as f64;
        let prev: Vec<f32> = match self.method {
            Method::EulerMaruyama | Method::ProbabilityFlow => {
                let beta = self.beta(tc);
                let flow = self.method == Method::ProbabilityFlow;
                sample
                    .iter()
                    .zip(&score)
                    .enumerate()
                    .map(|(i, (&x, s))| {
                        let x = x as f64;
                        let mean = if flow { x + 0.5 * beta * (x + s) / big_n } else { x + (0.5 * beta * x + beta * s) / big_n };
                        let noise = if z.is_empty() { 0.0 } else { (beta / big_n).sqrt() * z[i] as f64 };
                        (mean + noise) as f32
                    })
                    .collect()
            }
            Method::PredictorCorrector { snr, corrector_steps } => {
                let beta_i = self.schedule.betas[self.index(tc)] as f64;
                if sub < corrector_steps {
                    // Langevin corrector: the step size targets ‖step·s‖ / ‖noise part‖ = snr.
                    let grad: Vec<f32> = score.iter().map(|&s| s as f32).collect();
                    let ratio = snr * self.mean_norm(z) / self.mean_norm(&grad);
                    let step = 2.0 * (1.0 - beta_i) * ratio * ratio;
                    let scale = (2.0 * step).sqrt();
                    sample.iter().zip(&score).zip(z).map(|((&x, s), &zi)| (x as f64 + step * s + scale * zi as f64) as f32).collect()
                } else {
                    // Reverse-diffusion predictor of the discretised VP SDE.
                    let keep = 2.0 - (1.0 - beta_i).sqrt();
                    let g = beta_i.sqrt();
                    sample
                        .iter()
                        .zip(&score)
                        .enumerate()
                        .map(|(i, (&x, s))| (keep * x as f64 + beta_i * s + if z.is_empty() { 0.0 } else { g * z[i] as f64 }) as f32)
                        .collect()
                }
            }
        };
        Ok(StepOutput { prev_sample: prev, pred_original_sample: x0 })
    }

    /// √ᾱ·x0 + σ·noise at the discrete index of t (a model timestep t·(T − 1)).
    fn add_noise(&self, x0: &[f32], noise: &[f32], t: f64) -> Result<Vec<f32>> {
        let tc = t / (self.t_count() - 1) as f64;
        let (a, s) = (self.schedule.alphas_cumprod[self.index(tc)] as f64, self.sigma(tc));
        Ok(x0.iter().zip(noise).map(|(&x, &z)| (a.sqrt() * x as f64 + s * z as f64) as f32).collect())
    }

    fn order(&self) -> usize {
        self.per_level()
    }

    fn set_batch_size(&mut self, batch: usize) -> Result<()> {
        if batch == 0 {
            return Err(Error::Input("batch size 0: need at least 1".into()));
        }
        self.batch = batch;
        Ok(())
    }
}
